"""Distillation from the unpruned tagger (spacy_ldnet.prune.distill), checked
against brute-force enumeration of tag paths and on a tiny LM pipeline."""
import numpy
import pytest
import torch
from scipy.special import logsumexp

from spacy_ldnet.ner.model import get_head
from spacy_ldnet.prune.distill import CRFTeacher, crf_cross_entropy, distillation_update
from spacy_ldnet.prune.select import (
    FineTuneSettings,
    PruneError,
    PruneSettings,
    prune_in_place,
    run_fine_tuning,
    run_layer_selection,
)

from test_crf import CASE_IDS, CASES, _batch, _brute_force, _make
from test_lm_embedder import make_lm_nlp, set_masks, tiny_lm_path  # noqa: F401 (fixture)

torch.set_num_threads(1)


@pytest.mark.parametrize("name,num_tags,constraint,lengths", CASES, ids=CASE_IDS)
def test_cross_entropy_matches_brute_force(name, num_tags, constraint, lengths):
    student, teacher = _make(num_tags, constraint, seed=1), _make(num_tags, constraint, seed=5)
    emissions, _, mask = _batch(lengths, num_tags, seed=2)
    teacher_emissions, _, _ = _batch(lengths, num_tags, seed=3)
    value = crf_cross_entropy(student, emissions, mask, teacher, teacher_emissions)
    expected = 0.0
    for b, length in enumerate(lengths):
        _, s_p, ok = _brute_force(student, emissions[b], length)
        _, s_q, _ = _brute_force(teacher, teacher_emissions[b], length)
        log_p = s_p[ok] - logsumexp(s_p[ok])  # log p(y) over the allowed paths
        q = numpy.exp(s_q[ok] - logsumexp(s_q[ok]))
        expected += float(-(q * log_p).sum())
    assert value.item() == pytest.approx(expected, rel=1e-8, abs=1e-8)
    # The teacher's parameters are untouched and get no gradient.
    value.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.transitions.grad is not None


def test_cross_entropy_gradient_is_student_minus_teacher_marginals():
    student, teacher = _make(5, None, seed=1), _make(5, None, seed=4)
    emissions, _, mask = _batch([4, 2, 3], 5, seed=2)
    teacher_emissions, _, _ = _batch([4, 2, 3], 5, seed=6)
    E = emissions.clone().requires_grad_(True)
    crf_cross_entropy(student, E, mask, teacher, teacher_emissions).backward()
    Ep = emissions.clone().requires_grad_(True)
    (mu_p,) = torch.autograd.grad(student.log_partition(Ep, mask).sum(), [Ep])
    Eq = teacher_emissions.clone().requires_grad_(True)
    (mu_q,) = torch.autograd.grad(teacher.log_partition(Eq, mask).sum(), [Eq])
    torch.testing.assert_close(E.grad, mu_p - mu_q, rtol=1e-9, atol=1e-9)
    assert float((mu_p - mu_q).abs().max()) > 1e-3  # the two distributions differ
    # A student equal to its teacher gets no gradient on its emissions.
    E2 = teacher_emissions.clone().requires_grad_(True)
    crf_cross_entropy(teacher, E2, mask, teacher, teacher_emissions).backward()
    assert float(E2.grad.abs().max()) < 1e-9


def test_cross_entropy_from_a_point_mass_teacher_is_the_nll():
    student, teacher = _make(4, None, seed=1), _make(4, None, seed=2)
    with torch.no_grad():
        for p in teacher.parameters():
            p.zero_()
    emissions, tags, mask = _batch([5, 3], 4, seed=3)
    tags = tags.clamp(min=0)
    one_hot = torch.nn.functional.one_hot(tags, 4).to(emissions.dtype) * 200.0  # q = delta(gold)
    value = crf_cross_entropy(student, emissions, mask, teacher, one_hot)
    nll = student.neg_log_likelihood(emissions, tags, mask, reduction="sum")
    assert value.item() == pytest.approx(nll.item(), rel=1e-9)


def test_teacher_scores_are_the_unpruned_emissions_and_unknown_examples_fail(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    pipe = nlp.get_pipe("ldnet_ner")
    teacher = CRFTeacher(pipe, examples, batch_size=3)
    assert len(teacher) == len(examples)
    direct = pipe.model.predict([eg.predicted for eg in examples])
    for got, want in zip(teacher.scores_for(examples), direct):
        numpy.testing.assert_allclose(got, numpy.asarray(want), rtol=0, atol=1e-6)
    # Pruning the student leaves the teacher's scores and CRF as they were.
    before = [s.copy() for s in teacher.scores_for(examples)]
    set_masks(nlp, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    prune_in_place(nlp)
    with torch.no_grad():
        get_head(pipe.model).crf.transitions.add_(1.0)
    for got, want in zip(teacher.scores_for(examples), before):
        numpy.testing.assert_array_equal(got, want)
    assert not torch.equal(teacher.crf.transitions, get_head(pipe.model).crf.transitions)
    _, others = make_lm_nlp(tiny_lm_path)
    with pytest.raises(KeyError, match="not scored by the distillation teacher"):
        teacher.scores_for(others[:1])


def test_distillation_weight_zero_is_the_nll_update(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    pipe = nlp.get_pipe("ldnet_ner")
    teacher = CRFTeacher(pipe, examples)
    head = get_head(pipe.model)
    batch = examples[:4]
    losses = {}
    pipe.update(batch, drop=0.0, sgd=None, losses=losses)
    nll_grad = head.crf.transitions.grad.clone()
    head.zero_grad(set_to_none=True)
    loss = distillation_update(pipe, batch, teacher, 0.0)
    assert loss == pytest.approx(losses["ldnet_ner"], rel=1e-5)
    torch.testing.assert_close(head.crf.transitions.grad, nll_grad, rtol=1e-5, atol=1e-6)
    head.zero_grad(set_to_none=True)
    # The teacher is the student here, so weight 1 pulls towards nothing: zero emission
    # gradient, i.e. a different update from the NLL's.
    distill_loss = distillation_update(pipe, batch, teacher, 1.0)
    assert distill_loss < loss  # H(q, q) = entropy of q < NLL of the gold tags (untrained tagger)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        distillation_update(pipe, batch, teacher, 1.5)


def test_selection_and_fine_tuning_with_distillation(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    pipe = nlp.get_pipe("ldnet_ner")
    quiet = lambda m: None  # noqa: E731
    set_masks(nlp, [1.0, 0.9, 0.9], [0.9, 0.9, 1.0])
    settings = PruneSettings(lambda0=0.5, lambda1=2, steps=6, eval_every=3, batch_size=5, mask_learn_rate=2.0, distill_weight=0.5)
    with pytest.raises(PruneError, match="needs the unpruned tagger's scores"):
        run_layer_selection(nlp, examples, examples, settings, log=quiet)
    teacher = CRFTeacher(pipe, examples)
    result = run_layer_selection(nlp, examples, examples, settings, state_dir=tmp_path / "sel", log=quiet, teacher=teacher)
    assert [e["step"] for e in result.evaluations] == [3, 6]
    assert all(h["loss"] > 0 for h in result.mask_history)
    prune_in_place(nlp)
    ft = FineTuneSettings(steps=2, eval_every=1, batch_size=5, learn_rate=0.01, distill_weight=0.5)
    before = pipe.to_bytes(exclude=["vocab"])
    run_fine_tuning(nlp, examples, examples, ft, state_dir=tmp_path / "ft", log=quiet, teacher=teacher)
    assert (tmp_path / "ft" / "component.bin").read_bytes() != before
    # A state written without distillation is not resumed with it.
    nlp2, _ = make_lm_nlp(tiny_lm_path)
    plain = PruneSettings(lambda0=0.5, lambda1=2, steps=6, eval_every=3, batch_size=5, mask_learn_rate=2.0)
    with pytest.raises(PruneError, match="distill_weight: saved 0.5, now 0.0"):
        run_layer_selection(nlp2, examples, examples, plain, state_dir=tmp_path / "sel", log=quiet)
