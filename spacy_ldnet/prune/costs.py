"""What the LM features cost: parameters, multiply-adds per token, and the
measured speed of a pipeline (LD-Net section 4.3 reports the same three)."""
import time
from typing import Any, Dict, Sequence

from spacy.language import Language
from spacy.tokens import Doc

from ..embed.lm_modules import LMFeatures

#: Docs per ``nlp.pipe`` batch in :func:`words_per_second`.
SPEED_BATCH_SIZE = 128


def lm_cost(lm: LMFeatures) -> Dict[str, Any]:
    """Size and arithmetic of the two LMs of ``lm``.

    Returns a dict: ``layers`` ({"forward": L_f, "backward": L_b}),
    ``lstm_parameters`` (both LSTM stacks), ``embedding_parameters`` (their
    frozen input embeddings, counted apart: a lookup costs no arithmetic),
    ``multiply_adds_per_token`` (both LSTM stacks, per token) and
    ``projection_multiply_adds_per_token`` (W, which reads the dense outputs).
    """

    def count(module, embedding: bool) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if n.startswith("embedding") == embedding)

    fw, bw = lm.forward_lm, lm.backward_lm
    return {
        "layers": {"forward": fw.num_layers, "backward": bw.num_layers},
        "lstm_parameters": count(fw, False) + count(bw, False),
        "embedding_parameters": count(fw, True) + count(bw, True),
        "multiply_adds_per_token": fw.multiply_adds_per_token() + bw.multiply_adds_per_token(),
        "projection_multiply_adds_per_token": lm.proj.in_features * lm.proj.out_features,
    }


def words_per_second(nlp: Language, docs: Sequence[Doc], *, batch_size: int = SPEED_BATCH_SIZE, repeats: int = 1) -> float:
    """Words per second of ``nlp.pipe`` over fresh copies of ``docs`` (words and
    spaces only), after one warm-up batch; the best of ``repeats`` passes."""
    docs = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs]
    n_words = sum(len(d) for d in docs)
    list(nlp.pipe([d.copy() for d in docs[:batch_size]], batch_size=batch_size))
    best = 0.0
    for _ in range(repeats):
        copies = [d.copy() for d in docs]
        start = time.perf_counter()
        for _ in nlp.pipe(copies, batch_size=batch_size):
            pass
        best = max(best, n_words / max(time.perf_counter() - start, 1e-9))
    return best
