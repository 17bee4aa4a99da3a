"""The word BiLSTM head's dropout modes (``BiLSTMCRFTagger.v1`` per token,
``.v2`` locked per sequence) and the v2 architecture inside ``ldnet_ner``."""
import numpy
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import TRAIN_DATA, make_examples, make_nlp, tiny_model_config
from spacy_ldnet.ner.model import get_head
from spacy_ldnet.ner.modules import BiLSTMCRFHead

LENGTHS = [5, 3, 7, 1]


def _packed_ones(width: int = 64):
    X = torch.ones(len(LENGTHS), max(LENGTHS), width)
    return pack_padded_sequence(X, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)


def _rows_by_sequence(data: torch.Tensor, packed) -> dict:
    """Packed rows -> {sequence index: (length, D) rows in time order}."""
    out = {i: [] for i in range(len(LENGTHS))}
    row = 0
    for b in packed.batch_sizes.tolist():
        for rank in range(b):
            out[int(packed.sorted_indices[rank])].append(data[row])
            row += 1
    return {i: torch.stack(rows) for i, rows in out.items()}


@pytest.mark.parametrize("locked", [True, False])
def test_dropout_masks_are_per_sequence_only_when_locked(locked):
    torch.manual_seed(0)
    head = BiLSTMCRFHead(64, 8, 5, dropout=0.5, locked_dropout=locked)
    head.train()
    packed = _packed_ones()
    dropped = head._drop(packed.data, packed)  # (N_tokens, 64)
    assert set(numpy.unique(dropped.numpy())) <= {0.0, 2.0}
    by_seq = _rows_by_sequence(dropped, packed)
    same_in_time = [bool((rows == rows[0]).all()) for i, rows in by_seq.items() if LENGTHS[i] > 1]
    assert all(same_in_time) if locked else not any(same_in_time)
    # Different sequences get different masks.
    assert not torch.equal(by_seq[0][0], by_seq[2][0])
    head.eval()
    assert torch.equal(head._drop(packed.data, packed), packed.data)


def test_locked_dropout_keeps_the_expected_value():
    torch.manual_seed(0)
    head = BiLSTMCRFHead(512, 8, 5, dropout=0.3, locked_dropout=True).train()
    X = torch.ones(200, 4, 512)
    packed = pack_padded_sequence(X, torch.full((200,), 4), batch_first=True)
    mean = float(head._drop(packed.data, packed).mean())
    assert abs(mean - 1.0) < 0.02


def test_v2_tagger_trains_and_predicts_like_its_weights_say(tmp_path):
    import spacy

    model = tiny_model_config(dropout=0.5, locked_dropout=True)
    model["@architectures"] = "spacy_ldnet.BiLSTMCRFTagger.v2"
    nlp = make_nlp(model)
    examples = make_examples(nlp, TRAIN_DATA)
    optimizer = nlp.initialize(lambda: examples)
    head = get_head(nlp.get_pipe("ldnet_ner").model)
    assert head.locked_dropout is True
    losses = [nlp.update(examples, sgd=optimizer, losses={})["ldnet_ner"] for _ in range(30)]
    assert losses[-1] < losses[0]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert get_head(loaded.get_pipe("ldnet_ner").model).locked_dropout is True
    docs = [nlp.make_doc(t) for t, _ in TRAIN_DATA]
    a = nlp.get_pipe("ldnet_ner").model.predict(docs)
    b = loaded.get_pipe("ldnet_ner").model.predict([loaded.make_doc(t) for t, _ in TRAIN_DATA])
    for x, y in zip(a, b):
        numpy.testing.assert_allclose(x, y, atol=1e-6)
