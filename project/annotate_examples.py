"""Annotate a few sentences with the shipped pipelines: entities with their
probabilities (en_ldnet_conll03) and chunks (en_ldnet_conll00).

Usage: python project/annotate_examples.py [TEXT ...]
"""
import sys

import spacy

EXAMPLES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget.",
    "Shares of Apple Inc. rose 3 percent on the Nasdaq after Tim Cook spoke in Cupertino.",
    "Manchester United beat Bayern Munich 2-1 in the Champions League final in Barcelona.",
]


def main() -> int:
    texts = sys.argv[1:] or EXAMPLES
    ner, chunker = spacy.load("en_ldnet_conll03"), spacy.load("en_ldnet_conll00")
    for doc, chunked in zip(ner.pipe(texts), chunker.pipe(texts)):
        print(doc.text)
        group = doc.spans["ldnet_ner_scores"]
        for span, p in zip(group, group.attrs["scores"]):
            print(f"  {span.label_:<5} {p:5.3f}  {span.text}")
        print("  chunks: " + " ".join(f"[{c.label_} {c.text}]" for c in chunked.spans["chunks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
