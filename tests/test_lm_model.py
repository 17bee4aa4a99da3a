"""Tests of the dense LSTM encoder and LM (spacy_ldnet/lm/model.py)."""
import json

import pytest
import torch

from spacy_ldnet.lm import DenseLSTMEncoder, DenseLSTMLM, LMConfig, dense_output_columns, reverse_padded

torch.set_num_threads(1)

E, H, L, V = 6, 5, 4, 40


def small_config(**kw):
    base = dict(vocab_size=V, embed_dim=E, hidden_dim=H, num_layers=L, dropout=0.0, layer_dropout=0.0,
                output="softmax", cutoffs=(10, 20), target_dim=6)
    base.update(kw)
    return LMConfig(**base)


def make_encoder(seed=0, **kw):
    torch.manual_seed(seed)
    return DenseLSTMEncoder(small_config(**kw))


def batch(seed=1, B=3, T=7, lengths=(7, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.tensor(lengths)


def capture_layer_inputs(encoder):
    """Record the packed input data of every LSTM layer, on either path of the
    encoder: ``nn.LSTM.forward``, or ``padded_lstm`` (training on a CPU)."""
    import spacy_ldnet.lm.encoder as encoder_module

    seen = {}
    handles = []
    for i, lstm in enumerate(encoder.layers):
        def hook(module, args, i=i):
            seen[i] = args[0].data.detach().clone()
        handles.append(lstm.register_forward_pre_hook(hook))
    layer_of = {id(lstm): i for i, lstm in enumerate(encoder.layers)}
    original = encoder_module.padded_lstm

    def recording(lstm, packed):
        if id(lstm) in layer_of:
            seen[layer_of[id(lstm)]] = packed.data.detach().clone()
        return original(lstm, packed)

    class Restore:
        def remove(self):
            encoder_module.padded_lstm = original

    encoder_module.padded_lstm = recording
    handles.append(Restore())
    return seen, handles


# ---------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------


def test_dense_input_widths_and_output_width():
    enc = make_encoder()
    sizes = [lstm.input_size for lstm in enc.layers]
    assert sizes == [E + l * H for l in range(L)]
    assert all(lstm.hidden_size == H and lstm.num_layers == 1 and not lstm.bidirectional for lstm in enc.layers)
    assert enc.output_dim == E + L * H
    ids, lengths = batch()
    out = enc(ids, lengths)
    assert out.shape == (3, 7, E + L * H)


def test_output_starts_with_the_embedding():
    enc = make_encoder().eval()
    ids, lengths = batch()
    out = enc(ids, lengths)
    emb = enc.embedding(ids)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n, :E], emb[b, :n])


def test_multiply_adds_per_token():
    enc = make_encoder()
    expected = 0
    for l in range(L):
        in_size = E + l * H
        expected += 4 * H * in_size + 4 * H * H
    assert enc.multiply_adds_per_token() == expected


# ---------------------------------------------------------------------------
# causality and padding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0, 3, 5])
def test_no_future_leakage_forward(t):
    enc = make_encoder().eval()
    T = 7
    ids, lengths = batch(B=2, T=T, lengths=(T, T))
    changed = ids.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 7) % V
    a, b = enc(ids, lengths), enc(changed, lengths)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    # and the change is visible right after t (the test can fail)
    assert not torch.allclose(a[:, t + 1], b[:, t + 1])


def test_reverse_padded():
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0], [7, 0, 0, 0]])
    lengths = torch.tensor([4, 2, 1])
    assert reverse_padded(x, lengths).tolist() == [[4, 3, 2, 1], [6, 5, 0, 0], [7, 0, 0, 0]]
    y = torch.randn(3, 4, 2)
    assert torch.equal(reverse_padded(reverse_padded(y, lengths), lengths), y)
    assert torch.equal(reverse_padded(y, lengths)[0, 0], y[0, 3])
    with pytest.raises(ValueError):
        reverse_padded(x, torch.tensor([5, 1, 1]))


@pytest.mark.parametrize("t", [1, 4, 6])
def test_no_future_leakage_backward_through_reversal(t):
    """Backward LM: the feature at original position t only depends on tokens t..n-1."""
    enc = make_encoder(direction="backward").eval()
    T = 7
    ids, lengths = batch(B=2, T=T, lengths=(T, 6))
    changed = ids.clone()
    changed[:, :t] = (changed[:, :t] + 5) % V
    a, b = enc.encode_text_order(ids, lengths), enc.encode_text_order(changed, lengths)
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(a[row, t:n], b[row, t:n])
        assert not torch.allclose(a[row, t - 1], b[row, t - 1])
    # and it is the forward encoder run on the reversed rows
    direct = enc(reverse_padded(ids, lengths), lengths)
    assert torch.equal(reverse_padded(direct, lengths), a)


def test_padding_invariance():
    enc = make_encoder().eval()
    ids, lengths = batch(B=3, T=7, lengths=(7, 2, 5))
    out = enc(ids, lengths)
    other = ids.clone()
    other[1, 2:] = 3
    other[2, 5:] = 11
    out2 = enc(other, lengths)
    wider = torch.cat([ids, torch.full((3, 4), 9)], dim=1)
    out3 = enc(wider, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = enc(ids[b : b + 1, :n], torch.tensor([n]))[0]
        torch.testing.assert_close(out[b, :n], alone, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out2[b, :n], alone, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out3[b, :n], alone, atol=1e-6, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)
        assert torch.all(out3[b, n:] == 0)


def test_zero_length_rows_give_zeros():
    enc = make_encoder().eval()
    ids, _ = batch(B=3, T=5, lengths=(5, 5, 5))
    lengths = torch.tensor([5, 0, 3])
    out = enc(ids, lengths)
    assert torch.all(out[1] == 0)
    torch.testing.assert_close(out[2, :3], enc(ids[2:3, :3], torch.tensor([3]))[0], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------
# layer-wise dropout
# ---------------------------------------------------------------------------


def test_layer_dropout_p1_zeroes_only_the_deep_path():
    enc = make_encoder(layer_dropout=1.0).train()
    ids, lengths = batch()
    seen, handles = capture_layer_inputs(enc)
    out = enc(ids, lengths)
    for hd in handles:
        hd.remove()
    # deeper layers see x and zeros only
    for l in range(1, L):
        assert seen[l].shape[1] == E + l * H
        assert torch.all(seen[l][:, E:] == 0)
        assert torch.count_nonzero(seen[l][:, :E]) > 0
    # the output concatenation keeps every layer, each equal to the layer run on [x; 0 ... 0]
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    emb = enc.embedding(ids)
    for l, lstm in enumerate(enc.layers):
        x = torch.cat([emb, torch.zeros(*emb.shape[:2], l * H)], dim=-1)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        cols = slice(E + l * H, E + (l + 1) * H)
        torch.testing.assert_close(out[:, :, cols], h, atol=1e-6, rtol=1e-5)
        assert torch.count_nonzero(out[0, :, cols]) > 0


def test_layer_dropout_off_in_eval():
    enc = make_encoder(layer_dropout=1.0).eval()
    ids, lengths = batch()
    seen, handles = capture_layer_inputs(enc)
    out = enc(ids, lengths)
    for hd in handles:
        hd.remove()
    # deep inputs equal the output columns (packed order == packed order of the output)
    from torch.nn.utils.rnn import pack_padded_sequence

    packed_out = pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False).data
    for l in range(1, L):
        torch.testing.assert_close(seen[l], packed_out[:, : E + l * H])
    reference = make_encoder(layer_dropout=0.0).eval()(ids, lengths)
    torch.testing.assert_close(out, reference)


def test_layer_dropout_rescales_survivors():
    """p = 0.5: each deep block is either 0 or 2 * h (inverted dropout); both occur."""
    enc = make_encoder(layer_dropout=0.5).train()
    ids, lengths = batch()
    from torch.nn.utils.rnn import pack_padded_sequence

    outcomes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        seen, handles = capture_layer_inputs(enc)
        out = enc(ids, lengths)
        for hd in handles:
            hd.remove()
        packed_out = pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False).data
        last = seen[L - 1]
        torch.testing.assert_close(last[:, :E], packed_out[:, :E])  # embedding never dropped
        for k in range(L - 1):
            cols = slice(E + k * H, E + (k + 1) * H)
            block, h = last[:, cols], packed_out[:, cols]
            if torch.all(block == 0):
                outcomes.add("dropped")
            else:
                torch.testing.assert_close(block, 2.0 * h)
                outcomes.add("kept")
            assert torch.count_nonzero(h) > 0  # output never dropped
    assert outcomes == {"dropped", "kept"}


# ---------------------------------------------------------------------------
# layer scales and pruning
# ---------------------------------------------------------------------------


def test_layer_scales_scale_output_and_gradient_flows():
    enc = make_encoder().eval()
    ids, lengths = batch()
    scales = torch.tensor([0.5, 1.0, 2.0, 0.0], requires_grad=True)
    out = enc(ids, lengths, layer_scales=scales)
    plain = enc(ids, lengths)
    # layer 0 only reads x, so its columns are exactly scaled
    torch.testing.assert_close(out[..., E : E + H], 0.5 * plain[..., E : E + H])
    assert torch.all(out[..., E + 3 * H :] == 0)
    out.pow(2).sum().backward()
    assert scales.grad is not None and torch.all(torch.isfinite(scales.grad))
    assert torch.all(scales.grad[:3] != 0)


@pytest.mark.parametrize("keep", [[0, 2], [1, 3], [3], [0, 1, 2, 3], []])
def test_prune_equivalence(keep):
    enc = make_encoder(seed=3).eval()
    ids, lengths = batch(seed=5)
    torch.manual_seed(7)
    scales = torch.zeros(L)
    scales[keep] = torch.rand(len(keep)) + 0.5
    full = enc(ids, lengths, layer_scales=scales)
    pruned = enc.prune(keep).eval()
    assert pruned.num_layers == len(keep)
    assert [lstm.input_size for lstm in pruned.layers] == [E + j * H for j in range(len(keep))]
    cols = enc.output_columns(keep)
    assert torch.equal(cols, dense_output_columns(keep, E, H))
    small = pruned(ids, lengths, layer_scales=scales[keep] if keep else None)
    assert small.shape[-1] == E + len(keep) * H
    torch.testing.assert_close(full[..., cols], small, atol=1e-5, rtol=0)
    if 0 < len(keep) < L:
        # without the zero scales the outputs differ (the test can fail)
        assert not torch.allclose(enc(ids, lengths)[..., cols], pruned(ids, lengths), atol=1e-5)


def test_prune_rejects_bad_keep():
    enc = make_encoder()
    for bad in ([2, 1], [0, 0], [4], [-1]):
        with pytest.raises(ValueError):
            enc.prune(bad)


@pytest.mark.parametrize("output", ["softmax", "adaptive", "cosine", "vmf"])
@pytest.mark.parametrize("proj_dim", [0, 17])
def test_lm_prune_matches_zero_scales(output, proj_dim):
    torch.manual_seed(0)
    cfg = small_config(output=output, proj_dim=proj_dim)
    lm = DenseLSTMLM(cfg, target_vectors=torch.randn(V, 6)).eval()
    ids, lengths = batch()
    targets = torch.roll(ids, -1, 1)
    keep = [1, 2]
    scales = torch.tensor([0.0, 1.0, 1.0, 0.0])
    full = lm(ids, lengths, targets, layer_scales=scales)
    small = lm.prune(keep).eval()(ids, lengths, targets)
    torch.testing.assert_close(full.loss_sum, small.loss_sum, atol=1e-4, rtol=1e-5)
    assert full.n_targets == small.n_targets


# ---------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------


def test_config_round_trip_json():
    cfg = small_config(output="vmf", cutoffs=(3, 9), direction="backward", freeze_input=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert LMConfig.from_dict(d) == cfg
    assert isinstance(LMConfig.from_dict(d).cutoffs, tuple)


@pytest.mark.parametrize(
    "change",
    [
        dict(vocab_size=0),
        dict(hidden_dim=-1),
        dict(num_layers=2.5),
        dict(dropout=1.0),
        dict(layer_dropout=1.5),
        dict(output="sampled"),
        dict(direction="both"),
        dict(output_vocab_size=V + 1),
        dict(output="adaptive", cutoffs=(20, 10)),
        dict(output="adaptive", cutoffs=(10, V)),
        dict(output="adaptive", cutoffs=()),
        dict(freeze_input="yes"),
        dict(vmf_reg2=0.0),
        dict(embed_dim=True),
    ],
)
def test_config_validation(change):
    with pytest.raises(ValueError):
        small_config(**change)


def test_config_from_dict_rejects_unknown_keys():
    d = small_config().to_dict()
    d["hiden_dim"] = 3
    with pytest.raises(ValueError, match="hiden_dim"):
        LMConfig.from_dict(d)


# ---------------------------------------------------------------------------
# LM forward
# ---------------------------------------------------------------------------


def test_lm_counts_and_masks_targets():
    torch.manual_seed(0)
    lm = DenseLSTMLM(small_config()).eval()
    ids, lengths = batch(lengths=(7, 4, 5))
    targets = torch.roll(ids, -1, 1)
    out = lm(ids, lengths, targets)
    assert out.n_targets == 16
    torch.testing.assert_close(out.loss, out.loss_sum / 16)
    # the loss equals -sum log p(target) from log_probs
    lp = lm.log_probs(ids, lengths)
    mask = torch.arange(7)[None] < lengths[:, None]
    torch.testing.assert_close(out.loss_sum, -lp.gather(1, targets[mask][:, None]).sum())
    # masks and negative targets exclude positions
    tm = torch.ones(3, 7, dtype=torch.bool)
    tm[0, :3] = False
    t2 = targets.clone()
    t2[1, 0] = -100
    out2 = lm(ids, lengths, t2, target_mask=tm)
    assert out2.n_targets == 12
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        lm(ids, lengths, torch.full_like(targets, V))


def test_set_input_embeddings_freeze():
    torch.manual_seed(0)
    lm = DenseLSTMLM(small_config())
    table = torch.randn(V, E)
    lm.set_input_embeddings(table, freeze=True)
    assert torch.equal(lm.encoder.embedding.weight, table)
    assert lm.config.freeze_input
    ids, lengths = batch()
    lm(ids, lengths, ids).loss.backward()
    assert lm.encoder.embedding.weight.grad is None
    assert lm.encoder.layers[0].weight_ih_l0.grad is not None
    with pytest.raises(ValueError):
        lm.set_input_embeddings(torch.randn(V, E + 1), freeze=False)


def test_parameter_counts():
    torch.manual_seed(0)
    lm = DenseLSTMLM(small_config(proj_dim=4))
    counts = lm.parameter_counts()
    lstm = sum(4 * H * (E + l * H) + 4 * H * H + 8 * H for l in range(L))
    assert counts["encoder"] == lstm
    assert counts["input_embedding"] == V * E
    assert counts["output_layer"] == (E + L * H) * 4 + 4 + 4 * V + V
    assert counts["total"] == sum(p.numel() for p in lm.parameters())


@pytest.mark.parametrize("scaled", [False, True])
def test_inference_without_a_graph_equals_the_graph_path(scaled):
    """Eval mode under no_grad reads the layer inputs from one buffer in place;
    the values must be those of the path that records a graph."""
    enc = make_encoder().eval()
    ids, lengths = batch()
    scales = torch.tensor([0.5, 1.0, 2.0, 0.0]) if scaled else None
    with torch.no_grad():
        fast = enc.forward_packed(ids, lengths, layer_scales=scales).data
    graph_scales = None if scales is None else scales.clone().requires_grad_(True)
    with torch.enable_grad():
        graph = enc.forward_packed(ids, lengths, layer_scales=graph_scales).data
    assert fast.shape == (int(lengths.sum()), enc.output_dim)
    torch.testing.assert_close(fast, graph.detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_ids_outside_the_vocabulary_read_extra_inputs(direction):
    """An id V + k reads the extra_inputs row keyed k: the result equals the
    encoder with that row appended to its embedding table, on the graph and the
    no-graph path; without extra_inputs (or with the key missing) it raises."""
    enc = make_encoder(direction=direction).eval()
    ids, lengths = batch()
    rows = torch.randn(3, E)  # (3, E) inputs of three words outside the vocabulary
    keys = torch.tensor([5, 17, 900])  # ascending keys, e.g. rows of a pretrained table
    outside = ids.clone()
    outside[0, 2], outside[1, 0], outside[2, 4] = V + 17, V + 900, V + 5
    wide = make_encoder(direction=direction, vocab_size=V + 3).eval()
    state = enc.state_dict()
    state["embedding.weight"] = torch.cat([enc.embedding.weight, rows[[0, 1, 2]]])  # ids V, V+1, V+2
    wide.load_state_dict(state)
    same = outside.clone()
    for k, new_id in ((5, V), (17, V + 1), (900, V + 2)):
        same[outside == V + k] = new_id
    expected = wide.encode_text_order(same, lengths)
    got = enc.encode_text_order(outside, lengths, extra_inputs=(keys, rows))
    torch.testing.assert_close(got, expected)
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_text_order(outside, lengths, extra_inputs=(keys, rows)), expected)
    with pytest.raises(ValueError, match="outside the LM vocabulary"):
        enc(outside, lengths)
    with pytest.raises(ValueError, match="lack the key"):
        enc(outside, lengths, extra_inputs=(keys[:2], rows[:2]))
