"""ldnet_ner training and prediction throughput, and training memory, on CPU.

Trains the pipeline of a config for a few steps inside spaCy's own training
loop (``spacy.training.loop.train``), printing words/s and RSS as it goes, then
times ``nlp.pipe`` on a .spacy corpus with the resulting pipeline.
Options compare torch thread counts and the oneDNN LSTM kernel
(``--onednn`` turns off :func:`spacy_ldnet.torch_utils.native_cpu_lstm`).

Usage: python benchmarks/ner_train_predict.py [--config configs/conll03_ner.cfg]
    [--train corpus/conll03/train.spacy] [--dev corpus/conll03/dev.spacy]
    [--test corpus/conll03/test.spacy] [--steps 160] [--threads 1] [--onednn]
"""
import argparse
import contextlib
import os
import time


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/conll03_ner.cfg")
    p.add_argument("--train", default="corpus/conll03/train.spacy")
    p.add_argument("--dev", default="corpus/conll03/dev.spacy")
    p.add_argument("--test", default="corpus/conll03/test.spacy")
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.onednn:
        import spacy_ldnet.embed.modules as em
        import spacy_ldnet.ner.modules as nm

        em.native_cpu_lstm = nm.native_cpu_lstm = contextlib.nullcontext
    from spacy.training import Corpus, loop
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    overrides = {
        "paths.train": args.train, "paths.dev": args.dev, "training.max_steps": args.steps,
        "training.eval_frequency": 10 ** 6, "corpora.dev.limit": 5,
    }
    nlp = init_nlp(load_config(args.config, overrides=overrides))
    orig = loop.train_while_improving
    marks = []

    def wrapped(*a, **k):
        t0 = time.time()
        for i, (batch, info, best) in enumerate(orig(*a, **k)):
            if i % 40 == 0:
                marks.append((i, info["words"], time.time() - t0, rss_mb()))
                print(f"step {i:5d}  RSS {marks[-1][3]:7.0f} MB", flush=True)
            yield batch, info, best

    loop.train_while_improving = wrapped
    loop.train(nlp, None)
    (s0, w0, t0, _), (s1, w1, t1, _) = marks[1], marks[-1]
    print(f"training: {(w1 - w0) / (t1 - t0):,.0f} words/s (steps {s0}-{s1}), RSS {marks[0][3]:.0f} -> {marks[-1][3]:.0f} MB")
    docs = [eg.predicted for eg in Corpus(args.test)(nlp)]
    list(nlp.pipe([d.copy() for d in docs], batch_size=128))
    best = 0.0
    for _ in range(3):
        t = time.time()
        list(nlp.pipe([d.copy() for d in docs], batch_size=128))
        best = max(best, sum(len(d) for d in docs) / (time.time() - t))
    kernel = "oneDNN" if args.onednn else "native"
    print(f"prediction: {best:,.0f} words/s (best of 3, batch 128, {args.threads} thread(s), {kernel} LSTM kernel)")


if __name__ == "__main__":
    main()
