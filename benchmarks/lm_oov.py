"""How many tokens the LMs read as ``<unk>``: with ``LMEmbedder.v1`` every word
outside the LMs' vocabulary, with ``LMEmbedder.v3`` (``lm_oov_vectors``) only
words outside the GloVe table too.

Usage::

    python benchmarks/lm_oov.py corpus/conll03/test.spacy corpus/wikigold/test.spacy \\
        [--lm spacy_ldnet/lm/default]

Prints, per corpus, the share of all tokens and of entity tokens that are
outside the LM vocabulary, and outside both it and GloVe 6B 50d (lower-cased
lookup, as the embedder does).
"""
import argparse
from pathlib import Path

import spacy
from spacy.tokens import DocBin

from spacy_ldnet.embed.lm_embedder import default_lm_path
from spacy_ldnet.glove import load_glove


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="+", type=Path, help=".spacy files")
    p.add_argument("--lm", type=Path, default=default_lm_path(), help="folder with forward/vocab.txt")
    args = p.parse_args()
    lm_vocab = set((args.lm / "forward" / "vocab.txt").read_text(encoding="utf8").split("\n"))
    glove = set(load_glove()[0])
    vocab = spacy.blank("en").vocab
    print("| corpus | tokens | outside LM vocabulary | outside LM vocabulary and GloVe | entity tokens | outside LM vocabulary | outside both |")
    print("|---|---|---|---|---|---|---|")
    for path in args.corpora:
        counts = [0] * 6  # tokens, outside LM, outside both; the same for entity tokens
        for doc in DocBin().from_disk(path).get_docs(vocab):
            in_entity = {i for ent in doc.ents for i in range(ent.start, ent.end)}
            for token in doc:
                outside_lm = token.lower_ not in lm_vocab
                both = outside_lm and token.lower_ not in glove
                for offset in (0, 3) if token.i in in_entity else (0,):
                    counts[offset] += 1
                    counts[offset + 1] += outside_lm
                    counts[offset + 2] += both
        n, lm, both, en, elm, eboth = counts
        print(f"| {path} | {n:,} | {100 * lm / n:.1f}% | {100 * both / n:.1f}% | {en:,} | "
              f"{100 * elm / max(en, 1):.1f}% | {100 * eboth / max(en, 1):.1f}% |")


if __name__ == "__main__":
    main()
