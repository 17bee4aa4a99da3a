"""How far fine-tuning moved the GloVe rows of a trained no-LM pipeline.

Usage: python benchmarks/embedding_drift.py training/conll03_ner/model-best

Compares the embedder's fine-tuned rows (``n_word_rows``, GloVe frequency
order) with the same rows of the pipeline's vectors table, which keeps the
original GloVe vectors. Prints how many rows moved (received gradient in
training), and for those the median and 90th percentile of
||tuned - glove|| / ||glove|| and the median cosine similarity. Small drift
means test words that never occur in training (whose rows stay at GloVe)
live in nearly the same space as the tuned ones.
"""
import argparse

import numpy
import spacy


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("pipeline")
    p.add_argument("--component", default="ldnet_ner")
    args = p.parse_args()
    nlp = spacy.load(args.pipeline)
    embedder = nlp.get_pipe(args.component).model.get_ref("tok2vec").layers[0].shims[0]._model
    n = embedder.words.n_rows
    tuned = embedder.words.weight.detach().numpy()[:n]  # (n, d)
    glove = numpy.asarray(nlp.vocab.vectors.data[:n])  # (n, d)
    drift = numpy.linalg.norm(tuned - glove, axis=1)
    norm = numpy.linalg.norm(glove, axis=1)
    moved = drift > 1e-6
    rel = drift[moved] / norm[moved]
    cos = (tuned[moved] * glove[moved]).sum(1) / (numpy.linalg.norm(tuned[moved], axis=1) * norm[moved])
    print(f"{args.pipeline}: {int(moved.sum()):,} of {n:,} fine-tuned rows moved")
    print(f"relative drift ||tuned - glove|| / ||glove||: median {numpy.median(rel):.3f}, 90th percentile {numpy.percentile(rel, 90):.3f}")
    print(f"cosine(tuned, glove): median {numpy.median(cos):.4f}")


if __name__ == "__main__":
    main()
