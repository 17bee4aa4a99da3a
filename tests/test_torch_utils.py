"""run_lstm: the trainable LSTMs compact their weights before every call.

thinc's PyTorchShim.finish_update gives each parameter new storage after every
optimizer step (``param.data = ...``); on a GPU, cuDNN would then copy the weights on
every call and torch would warn.
"""
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from spacy_ldnet.embed.modules import CharBiLSTM
from spacy_ldnet.ner.modules import BiLSTMCRFHead
from spacy_ldnet.torch_utils import run_lstm


def _char_inputs(device):
    # " ab c " (ids 1 = space) and " de ": words start after a space, end before one.
    char_ids = torch.tensor([[1, 2, 3, 1, 4, 1], [1, 5, 6, 1, 0, 0]], device=device)
    char_lengths = torch.tensor([6, 4])
    fw_index = torch.tensor([[3, 5], [3, 0]], device=device)  # the space after each word
    bw_index = torch.tensor([[1, 4], [1, 0]], device=device)  # each word's first character
    return char_ids, char_lengths, fw_index, bw_index


def _forward_both(char, head, device):
    feats = char(*_char_inputs(device))  # (2, 2, 5)
    return head(feats, torch.tensor([2, 1]))  # (2, 2, 4)


def test_both_trainable_lstms_compact_their_weights_on_every_call(monkeypatch):
    calls = []
    original = nn.LSTM.flatten_parameters

    def spy(self):
        calls.append(self)
        return original(self)

    char = CharBiLSTM(n_chars=8, char_dim=4, hidden_dim=3, out_dim=5)
    head = BiLSTMCRFHead(input_dim=5, hidden_dim=3, num_tags=4)
    monkeypatch.setattr(nn.LSTM, "flatten_parameters", spy)  # after nn.LSTM.__init__'s own call
    for _ in range(2):
        _forward_both(char, head, "cpu")
    assert [id(m) for m in calls] == [id(char.lstm), id(head.lstm)] * 2


def test_run_lstm_returns_what_the_lstm_returns():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 2, batch_first=True, bidirectional=True)
    X = torch.randn(2, 4, 3)
    packed = pack_padded_sequence(X, torch.tensor([4, 2]), batch_first=True, enforce_sorted=False)
    expected, _ = lstm(packed)
    got = run_lstm(lstm, packed)
    assert torch.equal(got.data, expected.data)
    assert torch.equal(got.batch_sizes, expected.batch_sizes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN weight compaction needs a GPU")
def test_no_noncontiguous_weight_warning_after_a_thinc_style_update():
    torch.manual_seed(0)
    char = CharBiLSTM(n_chars=8, char_dim=4, hidden_dim=3, out_dim=5).cuda()
    head = BiLSTMCRFHead(input_dim=5, hidden_dim=3, num_tags=4).cuda()
    for module in (char, head):
        for p in module.parameters():
            p.data = p.data.clone()  # what thinc's PyTorchShim.finish_update does
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _forward_both(char, head, "cuda")
    assert not [w for w in caught if "contiguous chunk" in str(w.message)]
