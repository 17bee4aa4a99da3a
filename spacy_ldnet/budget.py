"""Training settings that follow the size of the training set.

The shipped configs' step budgets (8,000 steps with LM features, 12,000
without) and LM-feature dropout (0.5, LD-Net's) are for training sets the
size of CoNLL-2003 (14,041 sentences). On smaller sets the budgets over-train
and waste time. :func:`sized_settings` gives two steps per training sentence,
at least 1,000 and at most the config's own budget, a dev evaluation every
tenth of the steps, and ``lm_dropout`` 0.3 up to 1,000 training sentences
(chosen on the learning curve, ``benchmarks/learning_curve.py``; figures in
docs/results.md, "Settings chosen by measurement").
"""
from pathlib import Path
from typing import Any, Dict, Union

#: Steps per training sentence of :func:`step_budget`.
STEPS_PER_SENTENCE = 2
#: The least number of steps :func:`step_budget` gives.
MIN_STEPS = 1000
#: Training sets of at most this many sentences get :data:`SMALL_SET_LM_DROPOUT`.
SMALL_SET_SENTENCES = 1000
#: ``lm_dropout`` (dropout on [h_t; h_t^r] before W of r_t) for small training sets.
SMALL_SET_LM_DROPOUT = 0.3


def step_budget(n_sentences: int, config_max_steps: int) -> int:
    """``STEPS_PER_SENTENCE * n_sentences`` within ``[MIN_STEPS, config_max_steps]``
    (never above the config's own budget).

    Raises: ValueError if ``n_sentences`` < 1 or ``config_max_steps`` < 1."""
    if n_sentences < 1 or config_max_steps < 1:
        raise ValueError(f"need at least one training sentence and one step, got {n_sentences} and {config_max_steps}")
    return int(min(config_max_steps, max(MIN_STEPS, STEPS_PER_SENTENCE * n_sentences)))


def eval_frequency(steps: int) -> int:
    """A dev evaluation every tenth of the steps, at least every 100."""
    return max(100, steps // 10)


def training_sentences(path: Union[str, Path]) -> int:
    """Sentences in a ``.spacy`` file (or a directory of them), as ``spacy train``
    reads them with ``gold_preproc``: a Doc's sentences if it has boundaries,
    else the Doc as one sentence.

    Raises: ValueError if ``path`` holds no ``.spacy`` data."""
    import spacy
    from spacy.tokens import DocBin

    path = Path(path)
    files = sorted(path.rglob("*.spacy")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ValueError(f"{path} holds no .spacy data. Fix: convert your data first (spacy-ldnet convert-conll).")
    vocab = spacy.blank("en").vocab
    count = 0
    for f in files:
        for doc in DocBin().from_disk(f).get_docs(vocab):
            count += sum(1 for _ in doc.sents) if doc.has_annotation("SENT_START") else 1
    return count


def sized_settings(n_sentences: int, config: Dict[str, Any]) -> Dict[str, Any]:
    """The settings of ``config`` (a spaCy training config as a dict, e.g.
    ``spacy.util.load_config(path, interpolate=False)``) for a training set of
    ``n_sentences`` sentences, as dotted config paths (the form of ``spacy
    train`` overrides) to values:

    - ``training.max_steps``: :func:`step_budget` of the config's own budget;
    - ``training.eval_frequency``: :func:`eval_frequency` of it;
    - ``components.NAME.model.tok2vec.lm_dropout``: :data:`SMALL_SET_LM_DROPOUT`
      for every component whose embedder has LM features, when ``n_sentences``
      <= :data:`SMALL_SET_SENTENCES` and the config's value is higher.

    Raises: ValueError if ``n_sentences`` < 1 or the config has no
    ``[training] max_steps`` >= 1."""
    try:
        config_max = int(config["training"]["max_steps"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the config has no [training] max_steps ({e!r})") from None
    steps = step_budget(n_sentences, config_max)
    settings: Dict[str, Any] = {"training.max_steps": steps, "training.eval_frequency": eval_frequency(steps)}
    if n_sentences <= SMALL_SET_SENTENCES:
        for name, component in (config.get("components") or {}).items():
            tok2vec = ((component or {}).get("model") or {}).get("tok2vec") or {}
            lm_dropout = tok2vec.get("lm_dropout") if isinstance(tok2vec, dict) else None
            if isinstance(lm_dropout, (int, float)) and lm_dropout > SMALL_SET_LM_DROPOUT:
                settings[f"components.{name}.model.tok2vec.lm_dropout"] = SMALL_SET_LM_DROPOUT
    return settings
