"""Accuracy and speed of the LD-Net pipelines and their peers, measured side by side.

Usage::

    python benchmarks/peers.py [--pipeline "NAME=PATH[#int8]" ...] [--data corpus/conll03/test.spacy] \\
        [--rounds 3] [--batch-size 128] [--output-dir benchmarks/results/peers]

Each ``--pipeline`` is a display name and a pipeline directory or installed
package; ``#int8`` loads it with ``precision = "int8"`` set on its component
named ``ldnet_ner``.
Without ``--pipeline`` the defaults below are used, each one present on disk.

For every pipeline, in its own process with one torch/BLAS thread:

- **test F1**: ``nlp.evaluate`` on DATA read with ``gold_preproc`` (the
  CoNLL setting of ``spacy evaluate --gold-preproc``), entity F1;
- **words/s** in two regimes: the raw texts of DATA's documents, and one
  sentence per Doc (how short texts arrive one at a time or through
  ``nlp.pipe``); ``nlp.pipe`` in batches of ``--batch-size`` texts after one
  warm-up batch, tokenizer included, words counted as the pipeline's tokens.
  The pipelines are run interleaved, round after round (A B C ... A B C ...),
  and the median of ``--rounds`` rounds is kept, so they share the machine's
  state; the ratio to the first pipeline is taken within each round;
- **load time** (``spacy.load``, median) and **peak RSS** (the process's
  maximum resident set, MB, largest over rounds).

Writes ``peers.json`` (every round's figures, the machine), ``peers.md`` (the
table) and ``peers.png`` (test F1 against words/s, log scale, one panel per
regime) to ``--output-dir``; ``--report-only`` rebuilds the last two from
the first.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent

#: (name, pipeline) pairs measured by default, the first being the reference of the ratios.
DEFAULT_PIPELINES = [
    ("spaCy CNN (efficiency)", "training/peers/spacy_ner_efficiency/model-best"),
    ("spaCy CNN (accuracy)", "training/peers/spacy_ner_accuracy/model-best"),
    ("spaCy NER + MiniLM-L6", "training/peers/spacy_ner_trf/model-best"),
    ("ldnet_ner, no LM", "training/conll03_ner/model-best"),
    ("LD-Net, 20 LM layers", "training/conll03_ldnet/model-best"),
    ("LD-Net pruned (en_ldnet_conll03)", "en_ldnet_conll03"),
    ("LD-Net pruned, int8", "en_ldnet_conll03#int8"),
    ("LD-Net, 2 LM layers, BiLSTM 128", "training/conll03_ldnet_fast_int8vectors"),
    ("LD-Net, 2 LM layers, BiLSTM 128, int8", "training/conll03_ldnet_fast_int8vectors#int8"),
]
REGIMES = ("docs", "sentences")


# ---------------------------------------------------------------- the worker
def load(spec: str):
    import spacy

    path, _, precision = spec.partition("#")
    target = path if not (REPO / path).exists() else str(REPO / path)
    if not precision:
        return spacy.load(target)
    return spacy.load(target, config={"components": {"ldnet_ner": {"precision": precision}}})


def worker(spec: str, task: str, data: Path, batch_size: int) -> Dict:
    """Run one measurement in this process and return its figures."""
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    nlp = load(spec)
    load_s = time.perf_counter() - t0
    from spacy.tokens import DocBin
    from spacy.training import Corpus

    out = {"load_s": load_s}
    if task == "evaluate":
        examples = list(Corpus(data, gold_preproc=True)(nlp))
        scores = nlp.evaluate(examples, batch_size=batch_size)
        out.update(ents_f=100 * scores["ents_f"], ents_p=100 * scores["ents_p"], ents_r=100 * scores["ents_r"])
    else:
        docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
        if task == "sentences":  # a doc without sentence boundaries is one sentence
            texts = [s.text for d in docs for s in (d.sents if d.has_annotation("SENT_START") else [d])]
        else:
            texts = [d.text for d in docs]
        list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm-up
        t0 = time.perf_counter()
        words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size))
        seconds = time.perf_counter() - t0
        out.update(texts=len(texts), words=words, seconds=seconds, words_per_second=words / seconds)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_worker(spec: str, task: str, args) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--worker", spec, "--task", task, "--data", str(args.data),
           "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{spec} ({task}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the run
def cpu_name() -> str:
    """The CPU model and the kernels torch picked for it (int8 speed depends
    on AVX-512 VNNI), e.g. "AMD EPYC, torch CPU capability AVX512, VNNI"."""
    from spacy_ldnet.prune.report import machine_info

    info = machine_info()
    name = f"{info['cpu_model'] or info['cpu']}, torch CPU capability {info['torch_cpu_capability']}"
    return name + (", VNNI" if info["vnni"] else "")


def summarise(pipelines: List, rounds: List[Dict], evaluations: Dict) -> List[Dict]:
    """Per pipeline: F1, median words/s per regime and its ratio to the first pipeline."""
    rows = []
    ref = pipelines[0][0]
    for name, spec in pipelines:
        row = {"name": name, "pipeline": spec, **{k: evaluations[name][k] for k in ("ents_f", "ents_p", "ents_r")}}
        loads, rss = [evaluations[name]["load_s"]], [evaluations[name]["peak_rss_mb"]]
        for regime in REGIMES:
            runs = [r[regime][name] for r in rounds]
            row[f"{regime}_words_per_second"] = statistics.median(x["words_per_second"] for x in runs)
            row[f"{regime}_ratio"] = statistics.median(
                r[regime][name]["words_per_second"] / r[regime][ref]["words_per_second"] for r in rounds
            )
            loads += [x["load_s"] for x in runs]
            rss += [x["peak_rss_mb"] for x in runs]
        row["load_s"] = statistics.median(loads)
        row["peak_rss_mb"] = max(rss)
        rows.append(row)
    return rows


def table(rows: List[Dict], ref: str) -> str:
    lines = [
        f"| pipeline | test F1 | words/s, documents | x {ref} | words/s, one sentence per Doc | x {ref} | load (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['ents_f']:.2f} | {r['docs_words_per_second']:,.0f} | {r['docs_ratio']:.2f} | "
            f"{r['sentences_words_per_second']:,.0f} | {r['sentences_ratio']:.2f} | {r['load_s']:.1f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: List[Dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    colors = plt.get_cmap("tab10").colors
    for ax, regime, label in zip(axes, REGIMES, ("documents", "one sentence per Doc")):
        for i, r in enumerate(rows):
            ldnet = r["name"].startswith(("LD-Net", "ldnet"))
            ax.scatter(r[f"{regime}_words_per_second"], r["ents_f"], marker="o" if ldnet else "s", s=60,
                       color=colors[i % len(colors)], label=r["name"], zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([1000, 2000, 5000, 10000, 20000, 50000])
        ax.set_xlabel("words/s, 1 thread (log scale)")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("CoNLL-2003 test F1")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)


def write_report(result: Dict, output_dir: Path, rounds: int) -> str:
    """peers.md and peers.png from the run's JSON; returns the table."""
    rows, machine = result["summary"], result["machine"]
    md = table(rows, rows[0]["name"])
    (output_dir / "peers.md").write_text(f"Machine: {machine}. Median of {rounds} interleaved rounds.\n\n" + md)
    plot(rows, output_dir / "peers.png", f"CoNLL-2003 test, {machine}")
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", action="append", default=[], help="NAME=PATH[#int8]; repeatable; the first is the reference")
    p.add_argument("--data", type=Path, default=Path("corpus/conll03/test.spacy"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--output-dir", type=Path, default=Path("benchmarks/results/peers"))
    p.add_argument("--report-only", action="store_true", help="rebuild peers.md and peers.png from peers.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--task", choices=("evaluate",) + REGIMES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.task, args.data, args.batch_size)))
        return
    if args.report_only:
        result = json.loads((args.output_dir / "peers.json").read_text())
        print(write_report(result, args.output_dir, len(result["rounds"])))
        return
    if args.pipeline:
        pipelines = [tuple(x.split("=", 1)) for x in args.pipeline]
        bad = [x for x in args.pipeline if "=" not in x]
        if bad:
            raise SystemExit(f"--pipeline {bad[0]!r}: expected NAME=PATH[#int8]")
    else:
        pipelines = [(n, s) for n, s in DEFAULT_PIPELINES if (REPO / s.split("#")[0]).exists() or "/" not in s]
    if not args.data.exists():
        raise SystemExit(f"{args.data} is missing: run `spacy project run convert .` first")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    evaluations = {}
    for name, spec in pipelines:
        evaluations[name] = run_worker(spec, "evaluate", args)
        print(f"{name}: test F1 {evaluations[name]['ents_f']:.2f}", flush=True)
    rounds = []
    for k in range(args.rounds):
        rnd = {regime: {} for regime in REGIMES}
        for regime in REGIMES:
            for name, spec in pipelines:
                rnd[regime][name] = run_worker(spec, regime, args)
                print(f"round {k + 1} {regime}: {name} {rnd[regime][name]['words_per_second']:,.0f} words/s", flush=True)
        rounds.append(rnd)
    rows = summarise(pipelines, rounds, evaluations)
    machine = f"{cpu_name()}, {os.cpu_count()} cores, 1 thread per pipeline"
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "machine": machine, "python": platform.python_version(), "data": str(args.data),
        "batch_size": args.batch_size, "rounds": rounds, "evaluations": evaluations, "summary": rows,
    }
    (args.output_dir / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_report(result, args.output_dir, args.rounds))


if __name__ == "__main__":
    main()
