"""Temperature scaling of the CRF's span probabilities, and calibration error.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks", section 4.2) divides the scores by one ``tau > 0`` fitted on held-out
data. Here it divides the CRF's emission *and* transition scores before the
forward-backward pass (:meth:`spacy_ldnet.ner.crf.ConditionalRandomField.forward_backward`),
so the Viterbi spans stay the same and only their probabilities move.

Objective: the negative log-likelihood of the event "this predicted span is
correct" (its start, end and label match a gold span exactly), summed over the
Viterbi spans of the dev set, with the span probability as the forecast (the
log loss of a binary forecast, a proper scoring rule). It is chosen over the
CRF negative log-likelihood of the gold tag paths because it scores exactly the
number the component reports, thresholds and is judged on (ECE below), on a
fixed set of events (the Viterbi spans do not move with ``tau``), whereas the
gold-path NLL weighs whole-sequence probabilities, dominated by the many ``O``
tokens, and needs complete gold paths on the predicted tokenisation.

Expected calibration error (Naeini et al. 2015; Guo et al. 2017, section 2):
``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` over 15 equal-width
confidence bins ``[0, 1/15), .., [14/15, 1]``.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.util import minibatch

from .confidence import TagLayout, span_probabilities, viterbi_queries
from .model import cut, posterior

#: Number of equal-width bins of the expected calibration error.
N_BINS = 15
#: Range searched for the temperature (log-spaced grid, symmetric around 1).
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass
class SpanForecasts:
    """The Viterbi spans of a dev set, ready to be re-scored at any temperature.

    batches: per batch, ``(sequences, emission scores (S, T, K), queries (N, 6))``
        (queries as :meth:`spacy_ldnet.ner.confidence.TagLayout.queries`).
    correct: (N_total,) bool, whether each span, in batch order, matches a gold
        span (start and end character, label).
    """

    model: object
    batches: List[Tuple[object, object, numpy.ndarray]] = field(default_factory=list)
    correct: numpy.ndarray = field(default_factory=lambda: numpy.zeros((0,), dtype=bool))

    def probabilities(self, temperature: float) -> numpy.ndarray:
        """(N_total,) float64 span probabilities at ``temperature``."""
        out = [span_probabilities(posterior(self.model, E, seqs, temperature), q) for seqs, E, q in self.batches]
        return numpy.concatenate(out) if out else numpy.zeros((0,), dtype="float64")

    def nll(self, temperature: float) -> float:
        """Mean negative log-likelihood (nats per span) of the correctness of the spans."""
        p = numpy.clip(self.probabilities(temperature), 1e-12, 1.0 - 1e-12)
        return float(-numpy.mean(numpy.where(self.correct, numpy.log(p), numpy.log1p(-p))))


def collect_forecasts(nlp: Language, name: str, examples: Iterable[Example], batch_size: int = 64) -> SpanForecasts:
    """Run ``nlp`` up to component ``name`` on the examples' predicted docs and
    keep what re-scoring needs: emission scores, Viterbi spans and whether each
    span is correct against ``reference.ents`` (or ``reference.spans[spans_key]``)."""
    pipe = nlp.get_pipe(name)
    before = [proc for pname, proc in nlp.pipeline[: nlp.pipe_names.index(name)]]
    layout = TagLayout.from_tag_names(pipe.tag_names, pipe.labels)
    forecasts = SpanForecasts(pipe.model)
    correct: List[bool] = []
    for batch in minibatch(examples, batch_size):
        docs = [eg.predicted for eg in batch]
        for proc in before:
            docs = list(proc.pipe(docs))
        seqs = cut(pipe.model, docs)
        if not len(seqs):
            continue
        E, _, queries = viterbi_queries(pipe.model, seqs, layout)
        gold = [{(s.start_char, s.end_char, s.label_) for s in _gold_spans(eg.reference, pipe.spans_key)} for eg in batch]
        for row, start, end, first, _, _ in queries.tolist():
            i, offset, _ = seqs.spans[row]
            span = docs[i][offset + start : offset + end + 1]
            correct.append((span.start_char, span.end_char, pipe.labels[layout.label[first]]) in gold[i])
        forecasts.batches.append((seqs, E, queries))
    forecasts.correct = numpy.asarray(correct, dtype=bool)
    return forecasts


def _gold_spans(reference, spans_key: Optional[str]):
    return reference.ents if spans_key is None else reference.spans.get(spans_key, [])


def fit_temperature(nll, bounds: Tuple[float, float] = TEMPERATURE_RANGE, grid: int = 25, iters: int = 40) -> float:
    """The temperature in ``bounds`` that minimises ``nll(temperature)``.

    A log-spaced grid of ``grid`` points (odd: with symmetric bounds it holds
    1.0, so the result is never worse than no scaling), then golden-section
    search (Kiefer 1953) in log-temperature between the best grid point's
    neighbours.
    """
    logs = numpy.linspace(math.log(bounds[0]), math.log(bounds[1]), grid)
    values = [nll(math.exp(x)) for x in logs]
    best = int(numpy.argmin(values))
    lo, hi = logs[max(best - 1, 0)], logs[min(best + 1, grid - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(math.exp(a)), nll(math.exp(b))
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(math.exp(b))
    found, value = (a, fa) if fa <= fb else (b, fb)
    return float(math.exp(found)) if value <= values[best] else float(math.exp(logs[best]))


def reliability_bins(probs: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> List[Dict]:
    """Per equal-width bin: ``lower``, ``upper``, ``count``, mean ``confidence``
    and ``accuracy`` (None for an empty bin). probs, correct: (N,)."""
    index = numpy.minimum((numpy.asarray(probs) * n_bins).astype("int64"), n_bins - 1)
    out = []
    for b in range(n_bins):
        hit = index == b
        n = int(hit.sum())
        out.append({
            "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": n,
            "confidence": float(probs[hit].mean()) if n else None,
            "accuracy": float(correct[hit].mean()) if n else None,
        })
    return out


def expected_calibration_error(probs: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-width bins (see the module docstring); in [0, 1].

    Raises: ValueError if there is no forecast or the shapes differ."""
    probs, correct = numpy.asarray(probs, dtype="float64"), numpy.asarray(correct, dtype=bool)
    if probs.shape != correct.shape or not len(probs):
        raise ValueError(f"ECE needs as many outcomes as forecasts (at least one), got {probs.shape} and {correct.shape}.")
    bins = reliability_bins(probs, correct, n_bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(probs))


def plot_reliability(panels: Dict[str, Tuple[List[Dict], float]], path: Path) -> Optional[Path]:
    """Reliability diagram, one panel per entry ``title: (bins, ece)``: accuracy
    per confidence bin against the diagonal, into a PNG (matplotlib, Agg).

    Returns the path, or None if matplotlib is not installed (``pip install
    spacy-ldnet[plots]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), sharey=True, squeeze=False)
    for ax, (title, (bins, ece)) in zip(axes[0], panels.items()):
        full = [b for b in bins if b["count"]]
        width = bins[0]["upper"] - bins[0]["lower"]
        ax.bar([b["lower"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
               edgecolor="black", color="tab:blue", label="accuracy")
        ax.bar([b["lower"] for b in full], [abs(b["confidence"] - b["accuracy"]) for b in full],
               bottom=[min(b["confidence"], b["accuracy"]) for b in full], width=width, align="edge",
               facecolor="none", edgecolor="tab:red", hatch="//", label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        for b in full:
            ax.text(b["lower"] + width / 2, 0.02, str(b["count"]), ha="center", fontsize=6, rotation=90)
        ax.set_title(f"{title}: ECE {ece:.3f}")
        ax.set_xlabel("span probability (confidence)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("fraction of spans correct")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
