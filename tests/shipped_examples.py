"""Example texts for the shipped pipelines (written for this purpose; no corpus
text), and the output the tests compare with ``tests/fixtures/shipped/*.expected.json``."""
from typing import Dict, List, Optional

EXAMPLES: List[str] = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget.",
    "Shares of Apple Inc. rose 3 percent in New York after the company reported record iPhone sales.",
    "The World Health Organization said on Monday that Brazil and India had reported new cases.",
    "Manchester United beat Real Madrid 2-1 at Old Trafford, with goals from Marcus Rashford.",
    "Toyota Motor Corp will build a new plant in Kentucky, the Japanese carmaker said in Tokyo.",
    "The quick brown fox jumped over the lazy dog and the farmer did not notice.",
]


def annotate(nlp, spans_key: Optional[str]) -> List[Dict]:
    """Per example: tokens, the predicted entities (or ``doc.spans[spans_key]``)
    as ``[start, end, label]`` token offsets, and their span probabilities."""
    out = []
    for doc in nlp.pipe(EXAMPLES):
        spans = list(doc.spans[spans_key]) if spans_key else list(doc.ents)
        group = doc.spans["ldnet_ner_scores"]
        scores = {(s.start, s.end, s.label_): float(p) for s, p in zip(group, group.attrs["scores"])}
        out.append({
            "text": doc.text,
            "spans": [[s.start, s.end, s.label_] for s in spans],
            "scores": [round(scores[(s.start, s.end, s.label_)], 4) for s in spans],
        })
    return out
