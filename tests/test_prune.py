"""Layer selection, exact pruning and fine-tuning (LD-Net section 3.3) on tiny pipelines.

The tiny LMs and pipelines come from test_lm_embedder.py (3-layer, 8-wide
random LMs); nothing reads ../shared.
"""
import json
import subprocess
import sys

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from thinc.api import Adam, fix_random_seed

from spacy_ldnet.prune.costs import lm_cost
from spacy_ldnet.prune.finetune import FineTuneSettings, run_fine_tuning
from spacy_ldnet.prune.locate import PruneError, lm_module
from spacy_ldnet.prune.regularizer import layer_selection_penalty
from spacy_ldnet.prune.selection import PruneSettings, evaluation_due, force_layer_budget, run_layer_selection
from spacy_ldnet.prune.state import STATE_FILE
from spacy_ldnet.prune.surgery import prune_in_place

from conftest import assert_well_formed, make_examples, training_words
from test_lm_embedder import emissions, make_lm_nlp, make_open_nlp, tiny_lm_path  # noqa: F401 (tiny_lm_path: a fixture)


def last_component(state_dir):
    """The component bytes of the last saved state in ``state_dir``."""
    state = json.loads((state_dir / STATE_FILE).read_text())
    return (state_dir / state["files"]["component"]).read_bytes()


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


def test_pruned_v3_pipeline_reads_words_outside_the_lm_vocabulary_as_before(tmp_path):
    """LMEmbedder.v3 (lm_oov_vectors): pruning and a to_disk / spacy.load round
    trip keep the emissions of docs with words outside the LM vocabulary."""
    nlp = make_open_nlp(tmp_path / "open")
    nlp.update(make_examples(nlp), sgd=Adam(0.01), drop=0.0)
    set_masks(nlp, [0.6, 0.0, 1.0], [0.0, 0.8, 0.0])
    docs = [Doc(nlp.vocab, words=w.split()) for w in ("Mary works in London", "Google hired Paris Jones .")] + random_docs(nlp)
    masked = emissions(nlp, docs)
    assert prune_in_place(nlp) == {"forward": [0, 2], "backward": [1]}
    nlp.to_disk(tmp_path / "pruned")
    loaded = spacy.load(tmp_path / "pruned")
    assert loaded.get_pipe("ldnet_ner").model.get_ref("tok2vec").attrs["lm_oov_vectors"] is True
    for a, b in zip(emissions(loaded, docs), masked):
        numpy.testing.assert_allclose(a, b, atol=1e-4)


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
    # Never within budget with --strict-budget: a clear error.
    nlp3, _ = make_lm_nlp(tiny_lm_path)
    strict = PruneSettings(lambda0=0.0, lambda1=0, steps=2, eval_every=1, mask_learn_rate=0.0, force_budget=False)
    with pytest.raises(PruneError, match="lambda1=0 layers in use"):
        run_layer_selection(nlp3, examples, examples, strict, log=lambda m: None)


def test_over_budget_selection_keeps_the_largest_masks_by_default_and_strict_budget_stops(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    # Regulariser and mask updates off: the masks cannot reach a budget of 2 by themselves.
    set_masks(nlp, [0.3, 0.9, 0.0], [0.9, 0.5, 1.0])
    settings = PruneSettings(lambda0=0.0, lambda1=2, steps=2, eval_every=1, batch_size=5, mask_learn_rate=0.0, force_budget=False)
    with pytest.raises(PruneError, match="leave out --strict-budget") as failed:
        run_layer_selection(nlp, examples, examples, settings, state_dir=tmp_path / "state", log=lambda m: None)
    assert len(failed.value.history) == 2  # the mask history, for the plot
    # The failed run's state resumes with the default (only it and steps may change).
    nlp2, _ = make_lm_nlp(tiny_lm_path)
    settings.force_budget = PruneSettings().force_budget
    messages = []
    result = run_layer_selection(nlp2, examples, examples, settings, state_dir=tmp_path / "state", log=messages.append)
    lm = lm_module(nlp2.get_pipe("ldnet_ner"))
    # Largest two: backward 2 (1.0), then the 0.9 tie broken by the lower index (forward 1).
    assert lm.forward_masks.tolist() == pytest.approx([0.0, 0.9, 0.0])
    assert lm.backward_masks.tolist() == pytest.approx([0.0, 0.0, 1.0])
    # --eval-every 1 is honoured while over budget: steps 1 and 2, then the state with the budget forced.
    assert [(e["step"], e["n_layers"]) for e in result.evaluations] == [(1, 5), (2, 5), (2, 2)]
    assert result.best_step == 2 and result.evaluations[-1]["forced_budget"] is True
    forced = [m for m in messages if "keeping the 2 layers with the largest masks" in m]
    assert len(forced) == 1 and "forward [1], backward [2]" in forced[0] and "--strict-budget" in forced[0]
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
        runs.append((selection.mask_history, last_component(state)))  # the last state, not the best
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
    assert last_component(tmp_path / "ft") != weights_before
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


def test_evaluation_schedule_honours_eval_every_and_catches_the_first_step_within_budget():
    settings = PruneSettings(steps=400, eval_every=100, lambda1=2)
    # Every eval_every-th step and the last are due, within budget or not.
    due = [s for s in range(1, 401) if evaluation_due(s, settings, within_budget=False, last_over_budget=False)]
    assert due == [100, 200, 300, 400]
    # After an evaluation over budget, the first step within budget is due as well.
    assert evaluation_due(150, settings, within_budget=True, last_over_budget=True)
    assert not evaluation_due(150, settings, within_budget=False, last_over_budget=True)
    assert not evaluation_due(150, settings, within_budget=True, last_over_budget=False)
    assert evaluation_due(37, PruneSettings(steps=37, eval_every=100), within_budget=False, last_over_budget=False)


def test_selection_evaluates_at_the_first_step_within_budget_after_an_evaluation_over_it(tiny_lm_path):
    """With W = 0 (and a learning rate too small to move it) the task gives the
    masks no gradient, so z follows the regulariser alone: over a budget of 0,
    z' = z - lr * lambda0 * (2 - 2z); from 0.8 with lambda0 = 0.5 and lr = 1:
    0.6, 0.2, 0 (clamped), 0."""
    nlp, examples = make_lm_nlp(tiny_lm_path)
    lm = lm_module(nlp.get_pipe("ldnet_ner"))
    with torch.no_grad():
        lm.proj.weight.zero_()
    set_masks(nlp, [0.8, 0.0, 0.0], [0.0, 0.0, 0.0])
    settings = PruneSettings(lambda0=0.5, lambda1=0, steps=4, eval_every=2, batch_size=5, learn_rate=1e-12, mask_learn_rate=1.0)
    messages = []
    result = run_layer_selection(nlp, examples, examples, settings, log=messages.append)
    assert [round(h["forward"][0], 4) for h in result.mask_history] == [0.6, 0.2, 0.0, 0.0]
    assert [(e["step"], e["n_layers"]) for e in result.evaluations] == [(2, 1), (3, 0), (4, 0)]
    assert result.best_step in (3, 4) and not any(e.get("forced_budget") for e in result.evaluations)
    # One progress line per evaluation: step, mean loss, dev score, layers in use.
    lines = [m for m in messages if m.startswith("layer selection step")]
    assert len(lines) == 3
    assert all("loss" in m and "dev ents_f" in m and "layers in use" in m for m in lines)
    assert "over budget 0" in lines[0] and "within budget 0" in lines[1]


def test_state_files_are_replaced_whole_and_a_bad_or_foreign_state_is_refused(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    set_masks(nlp, [1.0, 0.0, 0.7], [0.0, 0.6, 0.0])
    prune_in_place(nlp)
    settings = FineTuneSettings(steps=2, eval_every=1, batch_size=5, learn_rate=0.01)
    run_fine_tuning(nlp, examples, examples, settings, state_dir=tmp_path / "ft", log=lambda m: None)
    state = json.loads((tmp_path / "ft" / STATE_FILE).read_text())
    # Only the files the state names remain (no temporary or stale files).
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == sorted([STATE_FILE, *state["files"].values()])
    assert state["files"]["component"] == "component-2.bin"
    # A state written with a setting this version does not have is refused, not resumed without it.
    state["settings"]["distill_weight"] = 0.5
    (tmp_path / "ft" / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(PruneError, match="distill_weight: saved 0.5, a setting this version does not have"):
        run_fine_tuning(nlp, examples, examples, settings, state_dir=tmp_path / "ft", log=lambda m: None)
    (tmp_path / "ft" / STATE_FILE).write_text("{not json")
    with pytest.raises(PruneError, match=f"delete {tmp_path / 'ft'}"):
        run_fine_tuning(nlp, examples, examples, settings, state_dir=tmp_path / "ft", log=lambda m: None)
