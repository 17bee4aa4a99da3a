"""Tests for spacy_ldnet.ner.crf against brute-force enumeration of tag paths."""
import copy
import itertools

import numpy
import pytest
import torch
from scipy.special import logsumexp

from spacy_ldnet.ner.crf import DISALLOWED_SCORE, ConditionalRandomField
from spacy_ldnet.ner.tags import allowed_transitions, biluo_tag_names

torch.set_num_threads(1)

LENGTHS = [5, 1, 3, 4, 2]  # several sequences of different lengths, incl. length 1


def _random_mask(num_tags, seed):
    """Random constraints that still let tag 0 form a path of any length."""
    rng = numpy.random.default_rng(seed)
    allowed = rng.random((num_tags + 2, num_tags + 2)) < 0.6
    allowed[num_tags, 0] = allowed[0, 0] = allowed[0, num_tags + 1] = True
    return allowed


def _cases():
    """(name, num_tags, constraint mask or None, lengths)."""
    per = allowed_transitions(biluo_tag_names(["PER"]))  # K = 5
    per_loc = allowed_transitions(biluo_tag_names(["PER", "LOC"]))  # K = 9
    return [
        ("K3", 3, None, LENGTHS),
        ("K5", 5, None, LENGTHS),
        ("biluo-1", 5, per, LENGTHS),
        ("biluo-2", 9, per_loc, [4, 1, 3, 2]),  # 9**4 paths at most
        ("random-mask", 4, _random_mask(4, 7), LENGTHS),
    ]


CASES = _cases()
CASE_IDS = [c[0] for c in CASES]


def _make(num_tags, constraint, seed, dtype=torch.float64):
    """A CRF with non-trivial random parameters and random padded emissions."""
    torch.manual_seed(seed)
    crf = ConditionalRandomField(num_tags, constraint).to(dtype)
    with torch.no_grad():
        crf.transitions.normal_(0.0, 1.0)
        crf.start_transitions.normal_(0.0, 1.0)
        crf.end_transitions.normal_(0.0, 1.0)
    return crf


def _batch(lengths, num_tags, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    emissions = torch.randn(B, T, num_tags, generator=gen, dtype=dtype) * 2.0
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = torch.randint(0, num_tags, (B, T), generator=gen)
    # Padding gets garbage that must be ignored.
    emissions = emissions.masked_fill(~mask.unsqueeze(2), 1e3)
    tags = tags.masked_fill(~mask, -7)
    return emissions, tags, mask


def _brute_force(crf, emissions_row, length):
    """All paths of ``length`` as (n_paths, length), their scores and allowed flags.

    Written directly from the definition, independently of the module: the
    raw parameters (no penalties) plus the constraint mask.
    """
    K = crf.num_tags
    start = crf.start_transitions.detach().numpy()
    trans = crf.transitions.detach().numpy()
    end = crf.end_transitions.detach().numpy()
    allowed = crf.constraint_mask.numpy()
    em = emissions_row[:length].detach().numpy()
    paths = numpy.array(list(itertools.product(range(K), repeat=length)))
    scores = start[paths[:, 0]] + end[paths[:, -1]]
    ok = allowed[K, paths[:, 0]] & allowed[paths[:, -1], K + 1]
    for t in range(length):
        scores = scores + em[t, paths[:, t]]
        if t > 0:
            scores = scores + trans[paths[:, t - 1], paths[:, t]]
            ok = ok & allowed[paths[:, t - 1], paths[:, t]]
    return paths, scores, ok


def _path_allowed(path, allowed):
    K = allowed.shape[0] - 2
    steps = [K] + list(path) + [K + 1]
    return all(allowed[a, b] for a, b in zip(steps[:-1], steps[1:]))


@pytest.mark.parametrize("name,num_tags,constraint,lengths", CASES, ids=CASE_IDS)
def test_log_partition_matches_brute_force(name, num_tags, constraint, lengths):
    crf = _make(num_tags, constraint, seed=1)
    emissions, _, mask = _batch(lengths, num_tags, seed=2)
    log_z = crf.log_partition(emissions, mask)
    assert log_z.shape == (len(lengths),)
    for b, length in enumerate(lengths):
        _, scores, ok = _brute_force(crf, emissions[b], length)
        assert ok.any()
        expected = logsumexp(scores[ok])
        assert log_z[b].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
        if constraint is not None and not ok.all():
            # The constraint changes the answer, so the test can tell them apart.
            assert abs(logsumexp(scores) - expected) > 1e-6


@pytest.mark.parametrize("name,num_tags,constraint,lengths", CASES, ids=CASE_IDS)
def test_path_score_matches_direct_sum(name, num_tags, constraint, lengths):
    crf = _make(num_tags, constraint, seed=3)
    emissions, tags, mask = _batch(lengths, num_tags, seed=4)
    got = crf.path_score(emissions, tags, mask)
    start = crf.start_transitions.detach().numpy()
    trans = crf.transitions.detach().numpy()
    end = crf.end_transitions.detach().numpy()
    allowed = crf.constraint_mask.numpy()
    K = num_tags
    for b, length in enumerate(lengths):
        y = tags[b, :length].tolist()
        em = emissions[b].numpy()
        expected = start[y[0]] + sum(em[t, y[t]] for t in range(length)) + end[y[-1]]
        expected += sum(trans[y[t - 1], y[t]] for t in range(1, length))
        steps = [K] + y + [K + 1]
        n_bad = sum(not allowed[a, c] for a, c in zip(steps[:-1], steps[1:]))
        expected += n_bad * DISALLOWED_SCORE
        assert got[b].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name,num_tags,constraint,lengths", CASES, ids=CASE_IDS)
def test_viterbi_matches_brute_force(name, num_tags, constraint, lengths):
    crf = _make(num_tags, constraint, seed=5)
    emissions, _, mask = _batch(lengths, num_tags, seed=6)
    paths, scores = crf.viterbi_decode(emissions, mask)
    assert scores.shape == (len(lengths),)
    assert len(paths) == len(lengths)
    for b, length in enumerate(lengths):
        all_paths, all_scores, ok = _brute_force(crf, emissions[b], length)
        best = numpy.flatnonzero(ok)[numpy.argmax(all_scores[ok])]
        assert len(paths[b]) == length
        assert paths[b] == all_paths[best].tolist()
        assert scores[b].item() == pytest.approx(all_scores[best], rel=1e-9, abs=1e-9)
    # The Viterbi score is the path_score of the decoded path.
    padded = torch.zeros_like(mask, dtype=torch.long)
    for b, p in enumerate(paths):
        padded[b, : len(p)] = torch.tensor(p)
    assert torch.allclose(crf.path_score(emissions, padded, mask), scores)


@pytest.mark.parametrize("labels", [["PER"], ["PER", "LOC"]])
def test_viterbi_never_uses_disallowed_transition(labels):
    names = biluo_tag_names(labels)
    allowed = allowed_transitions(names)
    K = len(names)
    crf = _make(K, allowed, seed=8)
    gen = torch.Generator().manual_seed(9)
    lengths = [6, 1, 2, 5, 3, 6, 4]
    B, T = len(lengths), max(lengths)
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emissions = torch.randn(B, T, K, generator=gen, dtype=torch.float64) * 50.0
    # Strongly favour tags that cannot start a sequence / cannot end one.
    emissions[:, 0, names.index(f"I-{labels[0]}")] = 1000.0
    emissions[0, 1, names.index(f"L-{labels[-1]}")] = 1000.0  # L-Y right after I-X
    for b, length in enumerate(lengths):
        emissions[b, length - 1, names.index(f"B-{labels[-1]}")] = 1000.0
    paths, scores = crf.viterbi_decode(emissions, mask)
    for b, path in enumerate(paths):
        assert len(path) == lengths[b]
        assert _path_allowed(path, allowed), [names[i] for i in path]
        assert scores[b].item() > DISALLOWED_SCORE / 2
    # Without constraints the same emissions give ill-formed paths, so the
    # check above is meaningful.
    free = _make(K, None, seed=8)
    free_paths, _ = free.viterbi_decode(emissions, mask)
    assert not all(_path_allowed(p, allowed) for p in free_paths)


def test_gradcheck_float64():
    names = biluo_tag_names(["X"])
    crf = _make(len(names), allowed_transitions(names), seed=10)
    emissions, tags, mask = _batch([3, 1, 2], len(names), seed=11)
    emissions = emissions.masked_fill(~mask.unsqueeze(2), 0.0).requires_grad_(True)
    tags = tags.masked_fill(~mask, 0)
    tags[:, 0] = 0  # "O": the gold path must be allowed for a finite likelihood
    params = tuple(
        p.detach().clone().requires_grad_(True)
        for p in (crf.transitions, crf.start_transitions, crf.end_transitions)
    )

    def fn(em, trans, start, end):
        state = {"transitions": trans, "start_transitions": start, "end_transitions": end}
        return torch.func.functional_call(crf, state, (em, tags, mask))

    assert torch.autograd.gradcheck(fn, (emissions,) + params, eps=1e-6, atol=1e-6)


def test_gradient_of_log_partition_is_marginals():
    """d logZ / d emissions[b, t, k] = p(y_t = k): sums to 1 on real positions, 0 on padding."""
    crf = _make(4, None, seed=12)
    emissions, _, mask = _batch([4, 2, 1], 4, seed=13)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    grad = emissions.grad
    assert (grad >= 0).all()
    totals = grad.sum(dim=2)
    assert torch.allclose(totals[mask], torch.ones_like(totals[mask]))
    assert torch.all(totals[~mask] == 0)
    log_lik = crf.log_likelihood(emissions, torch.zeros_like(mask, dtype=torch.long), mask)
    assert (log_lik < 0).all()


def test_padding_is_ignored():
    crf = _make(5, None, seed=14)
    emissions, tags, mask = _batch([3, 1, 5], 5, seed=15)
    other_em = emissions.clone()
    other_em[~mask] = torch.randn(int((~mask).sum()), 5, dtype=torch.float64)
    other_tags = tags.masked_fill(~mask, 2)
    assert torch.allclose(crf.log_partition(emissions, mask), crf.log_partition(other_em, mask))
    assert torch.allclose(crf.path_score(emissions, tags, mask), crf.path_score(other_em, other_tags, mask))
    assert crf.viterbi_decode(emissions, mask)[0] == crf.viterbi_decode(other_em, mask)[0]
    # Each row alone gives the same answer as in the batch.
    batched = crf.log_likelihood(emissions, tags, mask)
    for b, length in enumerate([3, 1, 5]):
        alone = crf.log_likelihood(emissions[b : b + 1, :length], tags[b : b + 1, :length])
        assert alone.item() == pytest.approx(batched[b].item(), rel=1e-12)


def test_decoding_and_posterior_of_a_batch_equal_each_sequence_alone():
    """Viterbi and forward-backward step the sequences longest first; every
    output must come back in the batch's order, equal to the sequence alone,
    and the padding must not leak into it."""
    crf = _make(9, allowed_transitions(biluo_tag_names(["A", "B"])), seed=16)
    lengths = [1, 4, 7, 2, 7, 3]  # shortest first, ties and length 1 included
    emissions, _, mask = _batch(lengths, 9, seed=17)
    emissions = emissions.masked_fill(~mask.unsqueeze(2), 50.0)  # loud padding
    paths, scores = crf.viterbi_decode(emissions, mask)
    post = crf.forward_backward(emissions, mask)
    for b, length in enumerate(lengths):
        alone_paths, alone_scores = crf.viterbi_decode(emissions[b : b + 1, :length])
        assert paths[b] == alone_paths[0] and len(paths[b]) == length
        assert scores[b].item() == pytest.approx(alone_scores[0].item(), rel=1e-12)
        alone = crf.forward_backward(emissions[b : b + 1, :length])
        assert post.log_z[b].item() == pytest.approx(alone.log_z[0].item(), rel=1e-12)
        for batched, single in ((post.log_alpha, alone.log_alpha), (post.log_beta, alone.log_beta)):
            finite = torch.isfinite(single[0])
            assert torch.equal(finite, torch.isfinite(batched[b, :length]))
            assert torch.allclose(batched[b, :length][finite], single[0][finite], rtol=1e-12, atol=1e-9)
        # padding repeats the last real alpha; beta there is the END score
        assert torch.equal(post.log_alpha[b, length:], post.log_alpha[b, length - 1].expand(len(post.log_alpha[b, length:]), 9))
    assert torch.allclose(post.log_z, crf.log_partition(emissions, mask), rtol=1e-12)


def test_float32_and_mixed_dtypes():
    names = biluo_tag_names(["A", "B"])
    crf64 = _make(len(names), allowed_transitions(names), seed=16)
    emissions, tags, mask = _batch([4, 2, 1], len(names), seed=17)
    ref = crf64.log_partition(emissions, mask)
    crf32 = copy.deepcopy(crf64).float()
    assert crf32.transitions.dtype == torch.float32
    got32 = crf32.log_partition(emissions.float(), mask)
    assert got32.dtype == torch.float32
    assert torch.allclose(got32.double(), ref, rtol=1e-4, atol=1e-4)
    # float32 parameters with float64 emissions compute in float64.
    mixed = crf32.log_partition(emissions, mask)
    assert mixed.dtype == torch.float64
    assert crf32.viterbi_decode(emissions.float(), mask)[0] == crf64.viterbi_decode(emissions, mask)[0]
    assert crf32.viterbi_decode(emissions.float(), mask)[1].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    names = biluo_tag_names(["A", "B"])
    crf = _make(len(names), allowed_transitions(names), seed=18)
    emissions, tags, mask = _batch([4, 2, 1], len(names), seed=19)
    cpu_ll = crf.log_likelihood(emissions, tags.masked_fill(~mask, 0), mask)
    cpu_paths, cpu_scores = crf.viterbi_decode(emissions, mask)
    crf_cuda = crf.cuda()
    dev_ll = crf_cuda.log_likelihood(emissions.cuda(), tags.cuda(), mask.cuda())
    dev_paths, dev_scores = crf_cuda.viterbi_decode(emissions.cuda(), mask.cuda())
    assert dev_ll.is_cuda and dev_scores.is_cuda
    assert torch.allclose(dev_ll.cpu(), cpu_ll)
    assert dev_paths == cpu_paths
    assert torch.allclose(dev_scores.cpu(), cpu_scores)


def test_invalid_inputs_raise():
    crf = ConditionalRandomField(3)
    emissions = torch.randn(2, 3, 3)
    tags = torch.zeros(2, 3, dtype=torch.long)
    empty = torch.tensor([[True, True, True], [False, False, False]])
    holes = torch.tensor([[True, False, True], [True, True, True]])
    for bad in (empty, holes):
        with pytest.raises(ValueError):
            crf.log_partition(emissions, bad)
        with pytest.raises(ValueError):
            crf.path_score(emissions, tags, bad)
        with pytest.raises(ValueError):
            crf.viterbi_decode(emissions, bad)
    with pytest.raises(ValueError):
        crf.log_partition(torch.randn(2, 0, 3))
    with pytest.raises(ValueError):
        crf.log_partition(torch.randn(2, 3, 4))  # wrong number of tags
    with pytest.raises(ValueError):
        crf.log_partition(emissions, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        crf.path_score(emissions, torch.full((2, 3), 3))  # tag out of range
    with pytest.raises(ValueError):
        crf.neg_log_likelihood(emissions, tags, reduction="avg")
    with pytest.raises(ValueError):
        ConditionalRandomField(3, numpy.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError):
        ConditionalRandomField(0)


def test_nll_reductions_and_empty_batch():
    crf = _make(3, None, seed=20)
    emissions, tags, mask = _batch([3, 2], 3, seed=21)
    per_seq = crf.neg_log_likelihood(emissions, tags, mask, reduction="none")
    assert per_seq.shape == (2,) and (per_seq > 0).all()
    assert torch.allclose(crf.neg_log_likelihood(emissions, tags, mask), per_seq.sum())
    assert torch.allclose(crf.neg_log_likelihood(emissions, tags, mask, reduction="mean"), per_seq.mean())
    paths, scores = crf.viterbi_decode(torch.zeros(0, 4, 3, dtype=torch.float64))
    assert paths == [] and scores.shape == (0,)


def test_state_dict_round_trip_keeps_constraints():
    names = biluo_tag_names(["PER"])
    crf = _make(len(names), allowed_transitions(names), seed=22)
    loaded = ConditionalRandomField(len(names)).to(torch.float64)
    loaded.load_state_dict(crf.state_dict())
    assert torch.equal(loaded.constraint_mask, crf.constraint_mask)
    emissions, _, mask = _batch([3, 1], len(names), seed=23)
    assert torch.allclose(loaded.log_partition(emissions, mask), crf.log_partition(emissions, mask))


def test_training_learns_transition_pattern():
    """Emission-free CRF fitted to a cyclic 0 -> 1 -> 2 -> 0 pattern decodes it."""
    torch.manual_seed(0)
    crf = ConditionalRandomField(3)
    lengths = [6, 4, 5, 1]
    B, T = len(lengths), max(lengths)
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tags = (torch.arange(T) % 3).expand(B, T)
    emissions = torch.zeros(B, T, 3)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = crf.neg_log_likelihood(emissions, tags, mask, reduction="mean")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    paths, _ = crf.viterbi_decode(emissions, mask)
    assert paths == [tags[b, :n].tolist() for b, n in enumerate(lengths)]
