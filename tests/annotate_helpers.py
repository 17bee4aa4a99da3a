"""Corpora and expected output for the ``spacy-ldnet annotate`` tests."""
import gzip
import json
import random
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
import srsly

from conftest import TRAIN_DATA


def sentences(n: int, seed: int = 0) -> List[str]:
    """``n`` sentences made of the training sentences, some with their words shuffled."""
    rng = random.Random(seed)
    texts = [text for text, _ in TRAIN_DATA]
    out = []
    for _ in range(n):
        words = rng.choice(texts).split()
        if rng.random() < 0.5:
            rng.shuffle(words)
        out.append(" ".join(words))
    return out


def write_corpus(folder: Path, n_text: int = 23, n_jsonl: int = 17) -> List[Dict]:
    """``folder/a.txt`` (with blank lines) and ``folder/b.jsonl.gz`` (with an
    ``id`` and a nested field); returns their records in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = sentences(n_text + n_jsonl)
    with open(folder / "a.txt", "w", encoding="utf8") as f:
        for i, text in enumerate(texts[:n_text]):
            f.write(text + ("\n\n" if i % 5 == 0 else "\n"))
    records = [{"text": t} for t in texts[:n_text]]
    jsonl = [{"id": i, "text": t, "meta": {"source": "b", "n": i}} for i, t in enumerate(texts[n_text:])]
    with gzip.open(folder / "b.jsonl.gz", "wt", encoding="utf8") as f:
        for record in jsonl:
            f.write(json.dumps(record) + "\n")
    return records + jsonl


def expected_records(pipeline: Path, records: List[Dict]) -> List[Dict]:
    """What annotate must write: each record with the entities of ``nlp.pipe``,
    and its span groups (the component's span scores among them) with a score
    per span. Scores are compared to 1e-5: a probability can differ in its
    last float32 digits with the batch, and annotate writes them to 1e-6."""
    nlp = spacy.load(pipeline)
    out = []
    for record, doc in zip(records, nlp.pipe([r["text"] for r in records])):
        expected = {**record, "entities": [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]}
        if doc.spans:
            expected["spans"] = {
                key: [
                    {"start": s.start_char, "end": s.end_char, "label": s.label_, "score": pytest.approx(float(p), abs=1e-5)}
                    for s, p in zip(group, group.attrs["scores"])
                ]
                for key, group in doc.spans.items()
            }
        out.append(expected)
    return out


def read_shards(output: Path) -> List[Dict]:
    """All records of the JSONL shards of ``output``, in shard order."""
    return [record for path in sorted(output.glob("shard-*.jsonl")) for record in srsly.read_jsonl(path)]
