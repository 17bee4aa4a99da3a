"""Entity F1 split by whether the gold entity's text occurs as an entity in training.

Usage:
    python benchmarks/seen_unseen.py corpus/conll03/train.spacy corpus/conll03/test.spacy \
        training/conll03_ner/model-best [training/exp_wdrop/model-best ...]

For each pipeline, predicts the test docs (gold tokenisation, as
``spacy evaluate --gold-preproc`` does: one doc per sentence) and prints
precision/recall/F1 over all entities, then recall on gold entities whose
(text, label) was or was not an entity in the training file, and precision on
predicted entities whose text was or was not. CoNLL-2003's test set has far
more unseen entities than its dev set, which is where the dev/test gap of a
no-LM tagger comes from; this script measures it per pipeline.
"""
import argparse
from typing import Dict, List, Set, Tuple

import spacy
from spacy.tokens import Doc, DocBin


def sentence_docs(path: str, vocab) -> List[Doc]:
    """One Doc per sentence with its gold entities (sentences from ``sent_starts``)."""
    out = []
    for doc in DocBin().from_disk(path).get_docs(vocab):
        for sent in doc.sents:
            out.append(sent.as_doc())
    return out


def spans(doc: Doc) -> Set[Tuple[int, int, str]]:
    return {(e.start, e.end, e.label_) for e in doc.ents}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("pipelines", nargs="+")
    args = p.parse_args()
    base = spacy.blank("en")
    seen_texts = {e.text for d in sentence_docs(args.train, base.vocab) for e in d.ents}
    for path in args.pipelines:
        nlp = spacy.load(path)
        gold_docs = sentence_docs(args.test, nlp.vocab)
        words = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in gold_docs]
        counts: Dict[str, List[int]] = {k: [0, 0] for k in ("p_seen", "p_unseen", "r_seen", "r_unseen")}
        tp = n_gold = n_pred = 0
        for gold, pred in zip(gold_docs, nlp.pipe(words, batch_size=128)):
            g, s = spans(gold), spans(pred)
            tp += len(g & s)
            n_gold += len(g)
            n_pred += len(s)
            for e in gold.ents:
                key = "r_seen" if e.text in seen_texts else "r_unseen"
                counts[key][0] += (e.start, e.end, e.label_) in s
                counts[key][1] += 1
            for e in pred.ents:
                key = "p_seen" if e.text in seen_texts else "p_unseen"
                counts[key][0] += (e.start, e.end, e.label_) in g
                counts[key][1] += 1
        prec, rec = tp / max(n_pred, 1), tp / max(n_gold, 1)
        f1 = 2 * prec * rec / max(prec + rec, 1e-12)
        print(f"{path}: P {100 * prec:.2f} R {100 * rec:.2f} F1 {100 * f1:.2f} ({n_gold} gold entities)")
        for key, (hit, n) in counts.items():
            what = "precision" if key.startswith("p") else "recall"
            print(f"  {what} on {key[2:]} entities: {100 * hit / max(n, 1):.2f} ({n})")


if __name__ == "__main__":
    main()
