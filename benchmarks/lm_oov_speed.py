"""Prediction speed of an ``LMEmbedder.v3`` pipeline with and without
``lm_oov_vectors`` (words outside the LM vocabulary read their vectors-table
row, or ``<unk>``), interleaved in one process so that both see the same
machine state.

Usage::

    python benchmarks/lm_oov_speed.py PIPELINE corpus/conll03/test.spacy [--rounds 3]

Prints words/s of ``nlp.pipe`` (batch 128, one torch thread, tokenization
included) over the corpus's texts, per round, for both settings.
"""
import argparse
import time
from pathlib import Path

import spacy
import torch
from spacy.tokens import DocBin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pipeline")
    p.add_argument("corpus", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    nlp = spacy.load(args.pipeline)
    models = [pipe.model for _, pipe in nlp.pipeline if getattr(pipe, "model", None) is not None]
    embedders = [node for model in models for node in model.walk() if "lm_oov_vectors" in node.attrs]
    if not embedders:
        raise SystemExit(f"{args.pipeline} has no LM embedder with lm_oov_vectors (LMEmbedder.v1-v3).")
    texts = [doc.text for doc in DocBin().from_disk(args.corpus).get_docs(nlp.vocab)]
    words = sum(len(nlp.make_doc(t)) for t in texts)
    speeds = {True: [], False: []}
    for _ in range(args.rounds):
        for flag in (True, False):
            for node in embedders:
                node.attrs["lm_oov_vectors"] = flag
            start = time.perf_counter()
            for _ in nlp.pipe(texts, batch_size=128):
                pass
            speeds[flag].append(words / (time.perf_counter() - start))
    for flag, values in speeds.items():
        print(f"lm_oov_vectors {str(flag).lower():5}  words/s " + " / ".join(f"{v:,.0f}" for v in values))


if __name__ == "__main__":
    main()
