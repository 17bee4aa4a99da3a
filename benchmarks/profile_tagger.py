"""Where an ``ldnet_ner`` pipeline spends its prediction time, stage by stage.

Usage::

    python benchmarks/profile_tagger.py PIPELINE [--data corpus/conll03/test.spacy] \\
        [--regime docs|sentences] [--batch-size 128] [--rounds 3] [--output OUT.json]

Runs ``nlp.pipe`` over the texts of DATA (the test set's documents, or one
sentence per Doc) in batches of ``--batch-size``, one torch thread, and times
each stage of the data path with wall-clock timers: torch forward hooks on the
modules, and wrappers around the spaCy-side functions. Stages:

- ``tokenizer``: ``nlp.make_doc`` (the text -> Doc step every spaCy pipeline has);
- ``cut + featurize``: Doc -> sequences -> word rows, character ids, LM ids;
- ``word vectors``, ``char BiLSTM``, ``LM features`` (both LMs and the
  projection r_t), ``word BiLSTM + emission``: the torch modules;
- ``CRF``: Viterbi and, for a scored pipeline, forward-backward and span
  probabilities;
- ``write to Doc``: ``set_annotations``;
- ``other``: the rest of the wall time (thinc and torch glue, batching).

Prints a table of seconds per batch of ``--batch-size`` texts and shares of
the total, the median of ``--rounds`` rounds; ``--output`` also writes JSON.
The timers add a few microseconds per call; words/s is printed with them on.
"""
import argparse
import contextlib
import json
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import spacy
import torch
from spacy.tokens import DocBin

STAGES = [
    "tokenizer",
    "cut + featurize",
    "word vectors",
    "char BiLSTM",
    "LM features",
    "word BiLSTM + emission",
    "CRF",
    "write to Doc",
    "other",
]


class Timers:
    """Accumulated wall time per stage; nested stages are subtracted from their parent."""

    def __init__(self):
        self.total = defaultdict(float)
        self._stack = []

    def start(self, name):
        self._stack.append([name, time.perf_counter(), 0.0])

    def stop(self):
        name, t0, inner = self._stack.pop()
        dt = time.perf_counter() - t0
        self.total[name] += dt - inner
        if self._stack:
            self._stack[-1][2] += dt

    def wrap(self, owner, attr, name):
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            self.start(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop()

        setattr(owner, attr, timed)

    def hook(self, module, name):
        module.register_forward_pre_hook(lambda m, a: self.start(name))
        module.register_forward_hook(lambda m, a, o: self.stop())


def instrument(nlp, timers: Timers) -> None:
    """Put timers on the stages of ``nlp``'s ``ldnet_ner`` component."""
    import spacy_ldnet.embed.embedder as embedder
    import spacy_ldnet.embed.lm_embedder as lm_embedder
    import spacy_ldnet.ner.confidence as confidence
    from spacy_ldnet.ner.model import get_head
    from spacy_ldnet.thinc_utils import torch_module

    ner = nlp.get_pipe("ldnet_ner")
    timers.wrap(nlp, "make_doc", "tokenizer")
    timers.wrap(confidence, "cut", "cut + featurize")
    timers.wrap(embedder, "featurize", "cut + featurize")
    timers.wrap(lm_embedder, "lm_token_ids", "cut + featurize")
    for fn in ("viterbi_paths", "posterior", "span_probabilities"):
        timers.wrap(confidence, fn, "CRF")
    timers.wrap(ner, "set_annotations", "write to Doc")
    # The modules predict through the component's precision (int8 copies for
    # precision = "int8"), so the hooks go on the modules in place during a call.
    hooked = set()
    using = ner._prediction_modules.using

    @contextlib.contextmanager
    def timed_using(model, precision):
        with using(model, precision):
            tok2vec = ner.model.get_ref("tok2vec")
            module = torch_module(tok2vec.layers[0])
            if id(module) not in hooked:
                hooked.add(id(module))
                char_word = getattr(module, "char_word", module)
                timers.hook(char_word.words, "word vectors")
                timers.hook(char_word.chars, "char BiLSTM")
                lm = getattr(module, "lm", None)
                if lm is not None:
                    timers.hook(lm, "LM features")
            head = get_head(ner.model)
            if id(head) not in hooked:
                hooked.add(id(head))
                timers.hook(head, "word BiLSTM + emission")
            yield

    ner._prediction_modules.using = timed_using


def texts_of(nlp, data: Path, regime: str):
    docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    if regime == "sentences":
        return [s.text for d in docs for s in d.sents]
    return [d.text for d in docs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pipeline")
    p.add_argument("--data", type=Path, default=Path("corpus/conll03/test.spacy"))
    p.add_argument("--regime", choices=["docs", "sentences"], default="docs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    nlp = spacy.load(args.pipeline)
    texts = texts_of(nlp, args.data, args.regime)
    n_words = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm-up
    timers = Timers()
    instrument(nlp, timers)
    rounds = []
    for _ in range(args.rounds):
        timers.total.clear()
        t0 = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=args.batch_size):
            pass
        wall = time.perf_counter() - t0
        stages = dict(timers.total)
        stages["other"] = wall - sum(stages.values())
        rounds.append((wall, stages))
    wall = statistics.median(r[0] for r in rounds)
    n_batches = -(-len(texts) // args.batch_size)
    per_batch = {s: statistics.median(r[1].get(s, 0.0) for r in rounds) / n_batches for s in STAGES}
    print(f"{args.pipeline}: {len(texts)} texts ({args.regime}), {n_words} words, batches of {args.batch_size}, "
          f"{n_words / wall:,.0f} words/s with the timers on ({platform.processor() or platform.machine()})")
    print(f"| stage | ms per batch | share |\n|---|---|---|")
    total = sum(per_batch.values())
    for s in STAGES:
        print(f"| {s} | {per_batch[s] * 1000:.1f} | {per_batch[s] / total:.0%} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({
            "pipeline": str(args.pipeline), "data": str(args.data), "regime": args.regime,
            "batch_size": args.batch_size, "texts": len(texts), "words": n_words,
            "words_per_second": n_words / wall, "seconds_per_batch": per_batch,
            "cpu": platform.processor() or platform.machine(), "torch_threads": 1,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
