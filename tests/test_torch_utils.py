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
from spacy_ldnet.torch_utils import backward_on_cpu, native_cpu_lstm, padded_lstm, run_lstm


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
    with torch.no_grad():
        expected, _ = lstm(packed)
        got = run_lstm(lstm, packed)
    assert torch.equal(got.data, expected.data)
    assert torch.equal(got.batch_sizes, expected.batch_sizes)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_lstm_equals_the_packed_lstm_and_its_gradients(bidirectional, num_layers):
    """Training on a CPU runs the packed batch padded (run_lstm): same outputs at
    every real position, same gradients for the inputs and every weight."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=num_layers, batch_first=True, bidirectional=bidirectional).eval()
    lengths = torch.tensor([5, 1, 3, 7, 2])
    X = torch.randn(5, 7, 3, requires_grad=True)

    def loss_and_grads(run):
        packed = pack_padded_sequence(X, lengths, batch_first=True, enforce_sorted=False)
        out = run(packed)  # (N, n_dir * 4) packed rows
        weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        loss = (out * weights).sum() + (out ** 2).sum()
        return out, torch.autograd.grad(loss, [X, *lstm.parameters()])

    with native_cpu_lstm():
        expected, expected_grads = loss_and_grads(lambda p: lstm(p)[0].data)
    got, got_grads = loss_and_grads(lambda p: run_lstm(lstm, p).data)
    assert backward_on_cpu(lstm, pack_padded_sequence(X, lengths, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_padded_lstm_applies_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True).train()
    packed = pack_padded_sequence(torch.randn(2, 4, 3), torch.tensor([4, 2]), batch_first=True, enforce_sorted=False)
    with native_cpu_lstm():
        torch.manual_seed(1)
        train_a = padded_lstm(lstm, packed)
        torch.manual_seed(2)
        train_b = padded_lstm(lstm, packed)
        lstm.eval()
        with torch.no_grad():
            expected = lstm(packed)[0].data
    assert not torch.allclose(train_a, train_b)
    torch.testing.assert_close(padded_lstm(lstm, packed).detach(), expected, atol=1e-6, rtol=1e-5)


def test_padded_lstm_refuses_projections():
    lstm = nn.LSTM(3, 4, proj_size=2, batch_first=True)
    packed = pack_padded_sequence(torch.randn(1, 2, 3), torch.tensor([2]), batch_first=True)
    with pytest.raises(ValueError, match="proj_size"):
        padded_lstm(lstm, packed)


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


def test_packed_rows_name_the_rows_of_each_sequence_and_step():
    from spacy_ldnet.torch_utils import packed_rows
    from torch.nn.utils.rnn import pad_packed_sequence

    lengths = torch.tensor([3, 5, 1, 4])
    X = torch.randn(4, 5, 2)
    packed = pack_padded_sequence(X, lengths, batch_first=True, enforce_sorted=False)
    steps = torch.tensor([[0, 2], [4, 1], [0, 0], [3, 2]])  # (S, 2), each below its length
    rows = packed_rows(packed, steps)  # (S, 2)
    expected = torch.stack([X[s, steps[s]] for s in range(4)])  # (S, 2, 2)
    torch.testing.assert_close(packed.data[rows], expected)
    padded, _ = pad_packed_sequence(packed, batch_first=True)
    torch.testing.assert_close(padded[1, 4], packed.data[packed_rows(packed, torch.tensor([[0], [4], [0], [0]]))[1, 0]])


@pytest.mark.parametrize("bucket_size", [1, 2, 16])
def test_char_bilstm_predicts_in_length_groups_as_it_does_packed(bucket_size):
    """At prediction on a CPU the character BiLSTM runs length-sorted padded
    groups on oneDNN; the word features equal the packed kernel's."""
    torch.manual_seed(0)
    char = CharBiLSTM(n_chars=20, char_dim=4, hidden_dim=6, out_dim=5).eval()
    words = [[3, 1], [5], [2, 2, 7], [1], [4, 4]]  # word lengths per sequence
    S, T = len(words), max(len(w) for w in words)
    streams = [[c for n in ws for c in [*torch.randint(2, 20, (n,)).tolist(), 1]] for ws in words]  # word chars, then a space (id 1)
    C = max(len(s) for s in streams)
    char_ids = torch.zeros(S, C, dtype=torch.long)
    fw_index = torch.zeros(S, T, dtype=torch.long)
    bw_index = torch.zeros(S, T, dtype=torch.long)
    for s, (ws, stream) in enumerate(zip(words, streams)):
        char_ids[s, : len(stream)] = torch.tensor(stream)
        start = 0
        for t, n in enumerate(ws):
            bw_index[s, t], fw_index[s, t] = start, start + n
            start += n + 1
    lengths = torch.tensor([len(s) for s in streams])
    real = torch.arange(T)[None, :] < torch.tensor([len(w) for w in words])[:, None]  # (S, T)
    with torch.no_grad():
        char.bucket_size = 0
        packed = char(char_ids, lengths, fw_index, bw_index)
        char.bucket_size = bucket_size
        grouped = char(char_ids, lengths, fw_index, bw_index)
    torch.testing.assert_close(grouped[real], packed[real], atol=1e-5, rtol=0)
