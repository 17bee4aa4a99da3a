"""Entity confidence from the CRF's exact marginals, checked against brute-force
enumeration of every allowed tag path, and the ``ldnet_ner`` settings built on it."""
import itertools
import shutil
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from scipy.special import logsumexp
from spacy.tokens import Doc, DocBin

from conftest import TRAIN_DATA, ents_of, tiny_model_config
from spacy_ldnet.ner.confidence import (
    CONFIDENCE_DEFAULTS,
    TagLayout,
    candidate_queries,
    check_settings,
    path_segments,
    span_probabilities,
)
from spacy_ldnet.ner.crf import ConditionalRandomField, segment_log_probs, tag_marginals
from spacy_ldnet.ner.model import get_head
from spacy_ldnet.ner.tags import allowed_transitions, biluo_tag_names

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures" / "pipelines_v0"
TEXTS = [text for text, _ in TRAIN_DATA] + ["John Smith flew to London with Google .", "Paris ."]
SHORT = "John Smith flew ."  # 17 ** 4 tag paths: small enough to enumerate


def make_crf(num_tags, constraint, seed):
    torch.manual_seed(seed)
    crf = ConditionalRandomField(num_tags, constraint).double()
    with torch.no_grad():
        for p in (crf.transitions, crf.start_transitions, crf.end_transitions):
            p.normal_(0.0, 1.0)
    return crf


def padded(lengths, num_tags, seed):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(len(lengths), max(lengths), num_tags, generator=gen, dtype=torch.float64) * 2.0
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions.masked_fill(~mask.unsqueeze(2), 7.0), mask  # padding gets garbage


def enumerate_paths(crf, em, temperature=1.0):
    """Every allowed tag path of emissions ``em`` (L, K) and its probability."""
    L, K = em.shape
    paths = numpy.array(list(itertools.product(range(K), repeat=L)))  # (P, L)
    start, trans, end = (p.detach().numpy() for p in (crf.start_transitions, crf.transitions, crf.end_transitions))
    allowed = crf.constraint_mask.numpy()
    score = start[paths[:, 0]] + em[numpy.arange(L)[None, :], paths].sum(1) + end[paths[:, -1]]
    score = score + trans[paths[:, :-1], paths[:, 1:]].sum(1)
    ok = allowed[K, paths[:, 0]] & allowed[paths[:, :-1], paths[:, 1:]].all(1) & allowed[paths[:, -1], K + 1]
    score = score[ok] / temperature
    return paths[ok], numpy.exp(score - logsumexp(score))


def brute_segment(paths, probs, s, e, first, inside, last):
    hit = paths[:, s] == first
    if e > s:
        hit &= (paths[:, s + 1 : e] == inside).all(1) & (paths[:, e] == last)
    return probs[hit].sum()


def biluo_queries(num_labels, lengths):
    """Every (b, s, e, first, inside, last) BILUO segment of every label."""
    rows = []
    for b, length in enumerate(lengths):
        for j, s in itertools.product(range(num_labels), range(length)):
            B, I, L, U = 1 + 4 * j, 2 + 4 * j, 3 + 4 * j, 4 + 4 * j
            rows += [(b, s, e, U if e == s else B, I, U if e == s else L) for e in range(s, length)]
    return torch.tensor(rows)


CASES = [
    ("biluo-1", ["PER"], [5, 1, 3], 1.0),
    ("biluo-2", ["PER", "LOC"], [5, 2, 4], 1.0),
    ("biluo-2-hot", ["PER", "LOC"], [4, 3], 0.6),
    ("biluo-2-cold", ["PER", "LOC"], [4, 1], 2.5),
]


@pytest.mark.parametrize("name,labels,lengths,temperature", CASES, ids=[c[0] for c in CASES])
def test_tag_and_span_marginals_equal_brute_force(name, labels, lengths, temperature):
    K = 1 + 4 * len(labels)
    crf = make_crf(K, allowed_transitions(biluo_tag_names(labels)), seed=len(lengths))
    emissions, mask = padded(lengths, K, seed=K)
    with torch.no_grad():
        post = crf.forward_backward(emissions, mask, temperature)
    marg = tag_marginals(post)
    queries = biluo_queries(len(labels), lengths)
    got = segment_log_probs(post, queries).exp()
    n_certain = 0
    for b, length in enumerate(lengths):
        paths, probs = enumerate_paths(crf, emissions[b, :length].numpy(), temperature)
        expected = numpy.stack([numpy.bincount(paths[:, t], probs, minlength=K) for t in range(length)])
        numpy.testing.assert_allclose(marg[b, :length].numpy(), expected, rtol=1e-9, atol=1e-12)
        assert torch.all(marg[b, length:] == 0)
        for q, p in zip(queries.tolist(), got.tolist()):
            if q[0] == b:
                want = brute_segment(paths, probs, *q[1:])
                assert p == pytest.approx(want, rel=1e-9, abs=1e-12), q
                n_certain += want > 0.5
    assert n_certain > 0  # some segments are likely, so the comparison is not all zeros


def test_general_segments_under_a_random_mask_equal_brute_force():
    rng = numpy.random.default_rng(3)
    allowed = rng.random((6, 6)) < 0.7
    allowed[4, 0] = allowed[0, 0] = allowed[0, 5] = True
    crf = make_crf(4, allowed, seed=4)
    emissions, mask = padded([5, 3], 4, seed=5)
    post = crf.forward_backward(emissions, mask)
    queries = torch.tensor([(b, s, e, *rng.integers(0, 4, 3)) for b, n in ((0, 5), (1, 3))
                            for s in range(n) for e in range(s, n)])
    got = segment_log_probs(post, queries).exp()
    for q, p in zip(queries.tolist(), got.tolist()):
        paths, probs = enumerate_paths(crf, emissions[q[0], : [5, 3][q[0]]].numpy())
        assert p == pytest.approx(brute_segment(paths, probs, *q[1:]), rel=1e-9, abs=1e-12), q


@pytest.mark.parametrize("threshold", [0.02, 0.1, 0.4])
def test_candidates_are_exactly_the_spans_above_the_threshold(threshold):
    labels = ["PER", "LOC"]
    layout = TagLayout.from_tag_names(biluo_tag_names(labels), labels)
    crf = make_crf(9, allowed_transitions(biluo_tag_names(labels)), seed=11)
    lengths = [5, 4, 1]
    emissions, mask = padded(lengths, 9, seed=12)
    with torch.no_grad():
        post = crf.forward_backward(emissions * 0.5, mask)  # flatter: long spans get some mass
    queries = candidate_queries(tag_marginals(post).numpy(), layout, threshold)
    probs = span_probabilities(post, queries)
    found = {tuple(q[:3]) + (int(layout.label[q[3]]),) for q, p in zip(queries.tolist(), probs) if p >= threshold}
    every = biluo_queries(len(labels), lengths)
    exact = segment_log_probs(post, every).exp().numpy()
    expected = {tuple(q[:3]) + (int(layout.label[q[3]]),) for q, p in zip(every.tolist(), exact) if p >= threshold}
    assert found == expected
    if threshold < 0.05:
        assert any(e - s >= 2 for _, s, e, _ in found)  # spans with an I-X inside are among them


@pytest.mark.parametrize("length", [1, 2, 4])
def test_a_span_has_probability_one_when_only_one_path_is_allowed(length):
    names = biluo_tag_names(["X"])  # O B-X I-X L-X U-X
    K = len(names)
    only = numpy.zeros((K + 2, K + 2), dtype=bool)
    if length == 1:
        only[K, 4] = only[4, K + 1] = True  # START U END
    else:
        only[K, 1] = only[1, 2] = only[2, 2] = only[2, 3] = only[1, 3] = only[3, K + 1] = True  # START B I* L END
    crf = make_crf(K, only, seed=1)
    emissions, mask = padded([length], K, seed=2)
    post = crf.forward_backward(emissions, mask)
    query = torch.tensor([[0, 0, length - 1, 4 if length == 1 else 1, 2, 4 if length == 1 else 3]])
    assert segment_log_probs(post, query).exp().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(tag_marginals(post)[0].max(dim=1).values, torch.ones(length, dtype=torch.float64))
    # under the BILUO mask other paths are allowed, so the same span is not certain
    free = make_crf(K, allowed_transitions(names), seed=1)
    assert segment_log_probs(free.forward_backward(emissions, mask), query).exp().item() < 0.999


def test_marginals_sum_to_one_and_temperature_one_is_the_default():
    crf = make_crf(9, allowed_transitions(biluo_tag_names(["A", "B"])), seed=7)
    emissions, mask = padded([6, 2, 1, 4], 9, seed=8)
    marg = crf.marginals(emissions, mask)
    sums = marg.sum(dim=2)
    assert torch.allclose(sums[mask], torch.ones_like(sums[mask])) and torch.all(sums[~mask] == 0)
    assert torch.equal(crf.marginals(emissions, mask, temperature=1.0), marg)
    assert not torch.allclose(crf.marginals(emissions, mask, temperature=3.0), marg, atol=1e-3)
    # the gradient of log Z w.r.t. the emissions is the tag marginals (a second, independent route)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    assert torch.allclose(emissions.grad, marg, atol=1e-10)


def test_bad_temperature_and_segments_raise():
    crf = make_crf(5, allowed_transitions(biluo_tag_names(["X"])), seed=0)
    emissions, mask = padded([3, 2], 5, seed=0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            crf.forward_backward(emissions, mask, bad)
    post = crf.forward_backward(emissions, mask)
    for bad in ([[1, 0, 2, 1, 2, 3]], [[0, 2, 1, 1, 2, 3]], [[0, 0, 1, 1, 2, 9]], [[2, 0, 0, 4, 4, 4]]):
        with pytest.raises(ValueError, match="segments"):
            segment_log_probs(post, torch.tensor(bad))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        segment_log_probs(post, torch.zeros(2, 5, dtype=torch.long))


def test_path_segments_reads_biluo_paths_and_rejects_broken_ones():
    names = biluo_tag_names(["PER", "LOC"])
    layout = TagLayout.from_tag_names(names, ["PER", "LOC"])
    ids = [names.index(t) for t in ["U-LOC", "O", "B-PER", "I-PER", "L-PER", "B-LOC", "L-LOC"]]
    second = [names.index(t) for t in ["O", "U-PER"]]
    got = path_segments([ids, [0], second], layout).tolist()
    assert got == [[0, 0, 0, 1], [0, 2, 4, 0], [0, 5, 6, 1], [2, 1, 1, 0]]
    for broken in ([[names.index("B-PER"), 0]], [[names.index("B-PER")], [names.index("L-PER")]]):
        with pytest.raises(ValueError, match="BILUO"):
            path_segments(broken, layout)


def test_marginals_stay_finite_and_exact_for_large_scores():
    """The forward pass of the marginals (scaled products) agrees with the
    training forward pass (logsumexp) where scores are far apart."""
    crf = make_crf(9, allowed_transitions(biluo_tag_names(["A", "B"])), seed=9)
    emissions, mask = padded([6, 3], 9, seed=10)
    for scale in (1.0, 30.0, 300.0):
        with torch.no_grad():
            post = crf.forward_backward(emissions * scale, mask)
            log_z = crf.log_partition(emissions * scale, mask)
        assert torch.allclose(post.log_z, log_z, rtol=1e-12, atol=1e-9)
        marg = tag_marginals(post)
        assert torch.isfinite(marg).all()
        assert torch.allclose(marg.sum(dim=2)[mask], torch.ones(9, dtype=torch.float64))


# ------------------------------------------------------------------ component
def load(path, **settings):
    return spacy.load(path, config={"components": {"ldnet_ner": settings}} if settings else {})


def spans_with_scores(doc, key="ldnet_ner_scores"):
    group = doc.spans[key]
    return [(s.start, s.end, s.label_) for s in group], numpy.asarray(group.attrs["scores"])


def test_component_scores_equal_brute_force(trained_nlp):
    pipe = trained_nlp.get_pipe("ldnet_ner")
    pipe.candidates_threshold = 0.01
    doc = trained_nlp(SHORT)
    crf = get_head(pipe.model).crf
    em = numpy.asarray(pipe.model.predict([trained_nlp.make_doc(SHORT)])[0], dtype="float64")
    paths, probs = enumerate_paths(crf, em)
    names, labels = pipe.tag_names, list(pipe.labels)

    def brute(start, end, label):
        tag = lambda p: names.index(f"{p}-{label}")  # noqa: E731
        return brute_segment(paths, probs, start, end - 1, tag("U" if end - start == 1 else "B"), tag("I"), tag("L"))

    spans, scores = spans_with_scores(doc)
    assert spans == [(e.start, e.end, e.label_) for e in doc.ents] and spans
    assert scores.dtype == numpy.float32 and ((scores > 0) & (scores <= 1)).all()
    numpy.testing.assert_allclose(scores, [brute(*s) for s in spans], rtol=1e-5)
    every = {(s, e, lab): brute(s, e, lab) for s in range(len(doc)) for e in range(s + 1, len(doc) + 1) for lab in labels}
    cands, cand_scores = spans_with_scores(doc, "ldnet_ner_candidates")
    assert set(cands) == {k for k, p in every.items() if p >= 0.01}
    numpy.testing.assert_allclose(cand_scores, [every[c] for c in cands], rtol=1e-5)
    marg = pipe.tag_marginals([doc])[0]
    numpy.testing.assert_allclose(marg, numpy.stack([numpy.bincount(paths[:, t], probs, minlength=len(names)) for t in range(len(doc))]), atol=1e-6)


def test_threshold_zero_and_scoring_off_equal_viterbi(trained_pipeline_path):
    default = load(trained_pipeline_path)
    off = load(trained_pipeline_path, scores_key=None)
    assert not off.get_pipe("ldnet_ner").scored
    viterbi = ents_of(off.pipe(TEXTS))
    assert ents_of(default.pipe(TEXTS)) == viterbi and any(viterbi)
    assert all("ldnet_ner_scores" not in d.spans for d in off.pipe(TEXTS))
    scored = [spans_with_scores(d) for d in default.pipe(TEXTS)]
    cut = 0.8
    assert any((s < cut).any() for _, s in scored) and any((s >= cut).any() for _, s in scored)
    kept = [[x for x, p in zip(spans, s) if p >= cut] for spans, s in scored]
    thresholded = list(load(trained_pipeline_path, threshold=cut).pipe(TEXTS))
    assert ents_of(thresholded) == kept
    assert [spans_with_scores(d)[0] for d in thresholded] == kept
    # without a scores group, the threshold still applies
    assert ents_of(load(trained_pipeline_path, threshold=cut, scores_key=None).pipe(TEXTS)) == kept


def test_temperature_changes_scores_not_spans(trained_pipeline_path):
    base = [spans_with_scores(d) for d in load(trained_pipeline_path).pipe(TEXTS)]
    one = [spans_with_scores(d) for d in load(trained_pipeline_path, temperature=1.0).pipe(TEXTS)]
    hot = [spans_with_scores(d) for d in load(trained_pipeline_path, temperature=3.0).pipe(TEXTS)]
    for (a, sa), (b, sb), (c, sc) in zip(base, one, hot):
        assert a == b == c
        numpy.testing.assert_array_equal(sa, sb)
        assert (sc < sa).all()  # a flatter distribution: the Viterbi spans lose mass here


def test_scores_survive_to_disk_docbin_and_multiprocessing(trained_pipeline_path, tmp_path):
    nlp = load(trained_pipeline_path, threshold=0.3, temperature=1.5)
    docs = list(nlp.pipe(TEXTS))
    expected = [spans_with_scores(d) for d in docs]
    nlp.to_disk(tmp_path / "pipeline")
    again = spacy.load(tmp_path / "pipeline")
    pipe = again.get_pipe("ldnet_ner")
    assert (pipe.threshold, pipe.temperature) == (0.3, 1.5)
    DocBin(docs=docs).to_disk(tmp_path / "docs.spacy")
    docs[0].to_disk(tmp_path / "doc0")
    routes = {
        "spacy.load": list(again.pipe(TEXTS)),
        "DocBin": list(DocBin().from_disk(tmp_path / "docs.spacy").get_docs(again.vocab)),
        "n_process=2": list(nlp.pipe(TEXTS, n_process=2, batch_size=3)),
    }
    for route, got in routes.items():
        for (spans, scores), doc in zip(expected, got):
            assert spans_with_scores(doc)[0] == spans, route
            # other batches (n_process=2, batch_size=3): emission scores agree to 1e-5, not bit for bit
            numpy.testing.assert_allclose(spans_with_scores(doc)[1], scores, rtol=1e-5, atol=1e-6, err_msg=route)
    single = Doc(again.vocab).from_disk(tmp_path / "doc0")
    numpy.testing.assert_array_equal(spans_with_scores(single)[1], expected[0][1])


def test_spans_mode_scores_the_spans_group(tmp_path):
    path = tmp_path / "chunks"
    shutil.copytree(FIXTURES / "chunks_lm_v2", path)
    texts = TEXTS[:3] + [""]
    separate = list(load(path).pipe(texts))
    assert any(d.spans["chunks"] for d in separate)
    same = list(load(path, scores_key="chunks").pipe(texts))
    for a, b in zip(separate, same):
        chunks = [(s.start, s.end, s.label_) for s in a.spans["chunks"]]
        assert spans_with_scores(a)[0] == chunks and not a.ents
        assert spans_with_scores(b, "chunks")[0] == chunks
        numpy.testing.assert_array_equal(spans_with_scores(b, "chunks")[1], spans_with_scores(a)[1])


@pytest.mark.parametrize("settings,named", [
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": -0.1}, "threshold"),
    ({"candidates_threshold": 0.0}, "candidates_threshold"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"candidates_key": "ldnet_ner_scores"}, "candidates_key"),
    ({"scores_key": ""}, "scores_key"),
    ({"candidates_threshold": 0.2, "candidates_key": None}, "candidates_key"),
])
def test_bad_settings_raise_naming_the_setting(settings, named):
    with pytest.raises(ValueError, match=named):
        spacy.blank("en").add_pipe("ldnet_ner", config={"model": tiny_model_config(), **settings})


def test_settings_default_and_unknown_ones_raise():
    assert check_settings(None) == CONFIDENCE_DEFAULTS
    assert check_settings("chunks", temperature=2.0)["temperature"] == 2.0
    with pytest.raises(ValueError, match="no setting"):
        check_settings(None, temprature=2.0)
