"""Training budgets that follow the size of the training set.

The shipped configs' step budgets (8,000 steps with LM features, 12,000
without) are for training sets the size of CoNLL-2003 (14,041 sentences). On
smaller sets they over-train and waste time; the learning curve
(``benchmarks/learning_curve.py``, docs/results.md, "Where the LM pays") used
two steps per training sentence, at least 1,000 and at most the config's own
budget, with a dev evaluation every tenth of the steps.
"""
from pathlib import Path
from typing import Union

#: Steps per training sentence of :func:`step_budget`.
STEPS_PER_SENTENCE = 2
#: The least number of steps :func:`step_budget` gives.
MIN_STEPS = 1000


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
