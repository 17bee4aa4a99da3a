"""Shared fixtures for the spaCy-level tests of spacy-ldnet.

Everything here is tiny (16-wide LSTMs, random 16-d vectors) so the suite runs
in well under a few minutes on one CPU thread. Nothing reads ``../shared``.
"""
import copy
import importlib.util
import os

# Offline Hugging Face for the transformer config; set before anything imports
# transformers. One BLAS/OpenMP thread: the tests share a 2-core machine.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy  # noqa: E402
import pytest  # noqa: E402
import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.vectors import Vectors  # noqa: E402
from thinc.api import Adam, fix_random_seed  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"

VECTOR_WIDTH = 16
MAX_SEQUENCE_LENGTH = 32

#: ``[model]`` of a tiny ldnet_ner (CharWordEmbedder + 16-wide BiLSTM).
TINY_EMBEDDER: Dict = {
    "@architectures": "spacy_ldnet.CharWordEmbedder.v1",
    "n_word_rows": 1000,
    "word_width": VECTOR_WIDTH,
    "n_chars": 256,
    "char_width": 8,
    "char_hidden_width": 16,
    "char_output_width": 16,
    "char_dropout": 0.0,
    "max_sequence_length": MAX_SEQUENCE_LENGTH,
    "load_glove_if_empty": False,
}
TINY_MODEL: Dict = {
    "@architectures": "spacy_ldnet.BiLSTMCRFTagger.v1",
    "hidden_width": 16,
    "num_layers": 1,
    "dropout": 0.0,
    "max_sequence_length": MAX_SEQUENCE_LENGTH,
    "mixed_precision": False,
    "tok2vec": TINY_EMBEDDER,
}

#: (text, [(start_char, end_char, label), ...]); all four CoNLL types occur.
TRAIN_DATA: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("John Smith flew to Paris with Air France .", [(0, 10, "PER"), (19, 24, "LOC"), (30, 40, "ORG")]),
    ("Germany beat Italy in the World Cup final .", [(0, 7, "LOC"), (13, 18, "LOC"), (26, 35, "MISC")]),
    ("Mary Jones works for Google in London .", [(0, 10, "PER"), (21, 27, "ORG"), (31, 37, "LOC")]),
    ("The Olympic Games opened yesterday .", [(4, 17, "MISC")]),
    ("Nothing happened here today .", []),
]

#: Words that get a row in the random vectors table (plus every training word).
EXTRA_WORDS = "the a of and in to is was for on that with as by at from it he she they".split()


def load_script(path: Path, name: str):
    """Import the script at PATH (e.g. ``project/pretrain_lms.py``) as module NAME."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model_config(**overrides) -> Dict:
    """A deep copy of :data:`TINY_MODEL` with tagger-level overrides applied."""
    cfg = copy.deepcopy(TINY_MODEL)
    cfg.update(overrides)
    return cfg


def set_random_vectors(nlp: Language, words: Sequence[str], width: int = VECTOR_WIDTH, seed: int = 0) -> None:
    """Fill ``nlp.vocab.vectors`` with random rows for the lower-cased ``words``."""
    keys = sorted({w.lower() for w in words})
    rng = numpy.random.default_rng(seed)
    data = rng.normal(0.0, 0.5, (len(keys), width)).astype("float32")
    nlp.vocab.vectors = Vectors(strings=nlp.vocab.strings, data=data, keys=keys, name="tiny_random")


def training_words() -> List[str]:
    nlp = spacy.blank("en")
    return [t.text for text, _ in TRAIN_DATA for t in nlp.make_doc(text)] + EXTRA_WORDS


def make_nlp(model: Optional[Dict] = None, *, vectors: bool = True, name: str = "ldnet_ner") -> Language:
    """``spacy.blank("en")`` with random vectors and a tiny, uninitialised ``ldnet_ner``."""
    nlp = spacy.blank("en")
    if vectors:
        set_random_vectors(nlp, training_words())
    nlp.add_pipe("ldnet_ner", name=name, config={"model": model if model is not None else tiny_model_config()})
    return nlp


def make_examples(nlp: Language, data=TRAIN_DATA) -> List[Example]:
    out = []
    for text, ents in data:
        doc = nlp.make_doc(text)
        out.append(Example.from_dict(doc, {"entities": [tuple(e) for e in ents]}))
    return out


def gold_ents(examples: Sequence[Example]) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start, e.end, e.label_) for e in eg.reference.ents] for eg in examples]


def ents_of(docs) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]


def train_until_exact(
    nlp: Language, examples: Sequence[Example], *, max_iter: int = 300, learn_rate: float = 0.01, seed: int = 0
) -> int:
    """Initialise and train ``nlp`` until it predicts every example's entities
    exactly; returns the number of updates. Fails the test if it never does."""
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(learn_rate))
    gold = gold_ents(examples)
    texts = [eg.reference.text for eg in examples]
    for i in range(1, max_iter + 1):
        nlp.update(list(examples), sgd=optimizer, drop=0.0, losses={})
        if i % 5 == 0 and ents_of(nlp.pipe(texts)) == gold:
            return i
    pytest.fail(f"did not overfit {len(examples)} examples in {max_iter} updates: {ents_of(nlp.pipe(texts))} != {gold}")


def assert_well_formed(doc, labels) -> None:
    """Entities are inside the doc, non-empty, non-overlapping, ordered, known labels,
    and consistent with the token-level IOB attributes."""
    prev_end = 0
    for ent in doc.ents:
        assert 0 <= ent.start < ent.end <= len(doc)
        assert ent.start >= prev_end
        assert ent.label_ in labels
        prev_end = ent.end
        assert doc[ent.start].ent_iob_ == "B"
        assert all(t.ent_iob_ == "I" and t.ent_type_ == ent.label_ for t in doc[ent.start + 1 : ent.end])
    inside = {i for ent in doc.ents for i in range(ent.start, ent.end)}
    assert all(t.ent_iob_ == "O" for t in doc if t.i not in inside)


@pytest.fixture(scope="session")
def trained_pipeline_path(tmp_path_factory) -> Path:
    """A tiny ldnet_ner pipeline overfit on :data:`TRAIN_DATA`, saved to disk."""
    nlp = make_nlp()
    examples = make_examples(nlp)
    train_until_exact(nlp, examples)
    path = tmp_path_factory.mktemp("pipelines") / "tiny_ldnet"
    nlp.to_disk(path)
    return path


@pytest.fixture
def trained_nlp(trained_pipeline_path) -> Language:
    """A fresh load of the session's trained pipeline (tests may mutate it)."""
    return spacy.load(trained_pipeline_path)
