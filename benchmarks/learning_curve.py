"""Learning curve: pipelines without and with LM features trained on the
first N sentences of a task's training set, evaluated on its test set and,
for NER, on WikiGold (Wikipedia text, out of domain, never trained on).

Usage (the ``curve`` workflow of project.yml runs these)::

    python benchmarks/learning_curve.py ner --sizes 250,500,1000,2000,5000,all \\
        --seeds 0,1,2 --pruned-sizes 1000 --jobs 2
    python benchmarks/learning_curve.py chunk --sizes 500,2000,all --seeds 0,1,2 --jobs 2

Every run (pipeline P, size N, seed S) trains with one torch thread::

    spacy train CONFIG --output training/curve/TASK/P_N_sS \\
        --paths.train corpus/curve/TASK/train_N.spacy --paths.dev DEV \\
        [--paths.lm lms/ldnet] --training.max_steps STEPS \\
        --training.eval_frequency STEPS/10 [--components.ldnet_ner.model.tok2vec.lm_dropout 0.3] \\
        --system.seed S
    spacy evaluate training/curve/TASK/P_N_sS/model-best TEST --gold-preproc

with the settings of ``spacy_ldnet.budget.sized_settings`` (what ``spacy-ldnet
init-config`` writes): STEPS is two updates of 32 sentences per training
sentence (64 epochs), at least 1,000 and at most the config's own
``max_steps``, which is also the budget of ``all``; with LM features and at
most 1,000 training sentences, ``lm_dropout`` 0.3 instead of the config's
0.5. Seeds beyond the first
run only for sizes up to ``--seeds-up-to``. The pruned pipeline of size N and
seed S is ``spacy-ldnet prune`` of the LD-Net run (layer selection on the
dev set, at most ``--lambda1`` layers, then fine-tuning), evaluated the same
way. For NER the shipped pipeline ``en_ldnet_conll03`` (trained on all of
CoNLL-2003, pruned) is evaluated too, if it is installed.

A finished run (its JSON under ``OUTPUT_DIR/runs``) is not run again, so an
interrupted curve resumes; an interrupted training starts again. Writes
``OUTPUT_DIR/learning_curve.json`` (every run; per size and pipeline the
mean and sd over seeds; the LM gain), ``learning_curve.png`` (F1 against
training sentences, log x, seed spread as error bars) and
``learning_curve.md`` (the table).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

from spacy_ldnet.budget import sized_settings

REPO = Path(__file__).resolve().parent.parent

TASKS: Dict[str, dict] = {
    "ner": {
        "title": "CoNLL-2003 NER",
        "train": "corpus/conll03/train.spacy",
        "dev": "corpus/conll03/dev.spacy",
        "test": {"test": "corpus/conll03/test.spacy", "wikigold": "corpus/wikigold/test.spacy"},
        "configs": {"nolm": "configs/conll03_ner.cfg", "ldnet": "configs/conll03_ldnet.cfg"},
        "score": "ents_f",
        "evaluate_args": [],
        "shipped": "en_ldnet_conll03",
    },
    "chunk": {
        "title": "CoNLL-2000 chunking",
        "train": "corpus/conll00/train.spacy",
        "dev": "corpus/conll00/dev.spacy",
        "test": {"test": "corpus/conll00/test.spacy"},
        "configs": {"nolm": "configs/conll00_chunk.cfg", "ldnet": "configs/conll00_chunk_ldnet.cfg"},
        "score": "spans_chunks_f",
        "evaluate_args": ["--spans-key", "chunks"],
        "shipped": None,
    },
}
#: Pipelines of the curve that are a task's config with other settings:
#: name -> (config key in TASKS[task]["configs"], extra ``spacy train`` overrides).
#: ``ldnet_unk`` is LD-Net as LD-Net has it: every word outside the LMs'
#: vocabulary is read as ``<unk>`` (``LMEmbedder.v3`` with ``lm_oov_vectors`` off).
VARIANTS: Dict[str, tuple] = {"ldnet_unk": ("ldnet", {"components.ldnet_ner.model.tok2vec.lm_oov_vectors": False})}
#: The pruned pipeline of each LD-Net pipeline.
PRUNED = {"pruned": "ldnet", "pruned_unk": "ldnet_unk"}
LABELS = {
    "nolm": "no LM",
    "ldnet": "LD-Net (20 LM layers)",
    "pruned": "LD-Net pruned",
    "ldnet_unk": "LD-Net, <unk> outside the LM vocabulary (v1)",
    "pruned_unk": "LD-Net pruned, <unk> (v1)",
    "shipped": "shipped (pruned)",
}
#: Table columns: pipeline, its header, and the header of its gain over no LM.
COLUMNS = [
    ("ldnet", "LD-Net", "LM gain"),
    ("pruned", "LD-Net pruned", "pruned gain"),
    ("ldnet_unk", "LD-Net, `<unk>`", "gain"),
    ("pruned_unk", "pruned, `<unk>`", "gain"),
]
SPLIT_TITLES = {"test": "test", "wikigold": "WikiGold (out of domain)"}


def settings_for(n_sentences: int, config: str) -> Dict[str, object]:
    """``spacy train`` overrides for a training set of ``n_sentences``
    sentences; see :func:`spacy_ldnet.budget.sized_settings`."""
    from spacy.util import load_config

    return sized_settings(n_sentences, load_config(REPO / config, interpolate=False))


def make_subset(n: Optional[int], source: Path, target: Path) -> int:
    """The first ``n`` sentences of ``source`` (a .spacy file; all if None), one per Doc.

    Docs with sentence boundaries are cut into sentences (entities kept); a
    Doc without them is one sentence (span groups kept)."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    out, count = DocBin(store_user_data=False), 0
    for doc in DocBin().from_disk(source).get_docs(nlp.vocab):
        for sent in (s.as_doc() for s in doc.sents) if doc.has_annotation("SENT_START") else [doc]:
            if n is not None and count == n:
                break
            out.add(sent)
            count += 1
    if n is not None and count < n:
        raise ValueError(f"{source} has {count} sentences, fewer than the {n} asked for: drop that size")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a curve started at the same
    # time (another --pipelines) never reads a half-written file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    out.to_disk(partial)
    os.replace(partial, target)
    return count


def run(cmd: List[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "a", encoding="utf8") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)


def evaluate(model: str, task: dict, out: Path, log: Path) -> Dict[str, float]:
    scores = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, data in task["test"].items():
        target = out / f"{split}.json"
        if not target.is_file():
            run([sys.executable, "-m", "spacy", "evaluate", model, data, "--output", str(target), "--gold-preproc",
                 *task["evaluate_args"]], log)
        scores[split] = round(100 * json.loads(target.read_text())[task["score"]], 2)
    return scores


def size_name(n: Optional[int]) -> str:
    return "all" if n is None else str(n)


def one_run(task_name: str, pipeline: str, n: Optional[int], seed: int, args) -> dict:
    task = TASKS[task_name]
    name = f"{pipeline}_{size_name(n)}_s{seed}"
    results = args.output_dir / "runs" / f"{name}.json"
    if results.is_file():
        return json.loads(results.read_text())
    base = REPO / "training" / "curve" / task_name
    out, log = base / name, base / f"{name}.log"
    train = f"corpus/curve/{task_name}/train_{size_name(n)}.spacy"
    record = {"task": task_name, "pipeline": pipeline, "size": size_name(n), "seed": seed}
    if pipeline in PRUNED:
        source = base / f"{PRUNED[pipeline]}_{size_name(n)}_s{seed}" / "model-best"
        run(["spacy-ldnet", "prune", str(source), str(out), "--train", train, "--dev", task["dev"],
             "--lambda1", str(args.lambda1), "--steps", str(args.prune_steps), "--eval-every", "100",
             "--finetune-steps", str(args.prune_steps), "--seed", str(seed), "--threads", "1"], log)
        prune = json.loads((out / "prune.json").read_text())
        record["kept_layers"] = prune["kept_layers"]
        record["lm_multiply_adds_per_token"] = prune["lm_multiply_adds_per_token"]
        record["words_per_second"] = prune["words_per_second"]
        record["dev"] = round(100 * prune["dev_f1"]["after"], 2)
        model = out / "model-pruned"
    else:
        kind, extra = VARIANTS.get(pipeline, (pipeline, {}))
        config = task["configs"][kind]
        sentences = json.loads((REPO / f"corpus/curve/{task_name}/train_{size_name(n)}.json").read_text())["sentences"]
        settings = {**settings_for(sentences, config), **extra}
        if not (out / "model-best").is_dir():
            cmd = [sys.executable, "-m", "spacy", "train", config, "--output", str(out),
                   "--paths.train", train, "--paths.dev", task["dev"], "--system.seed", str(seed)]
            for key, value in settings.items():
                cmd += [f"--{key}", str(value)]
            if kind == "ldnet":
                cmd += ["--paths.lm", "lms/ldnet"]
            run(cmd, log)
        steps = settings["training.max_steps"]
        record["settings"] = {key.rsplit(".", 1)[-1]: value for key, value in settings.items() if "training." not in key}
        record["steps"] = steps
        model = out / "model-best"
        record["dev"] = round(100 * json.loads((model / "meta.json").read_text())["performance"][task["score"]], 2)
    record["sentences"] = json.loads((REPO / f"corpus/curve/{task_name}/train_{size_name(n)}.json").read_text())["sentences"]
    record.update(evaluate(str(model), task, out, log))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{task_name} {name}: " + ", ".join(f"{k} {record[k]:.2f}" for k in task["test"]), flush=True)
    return record


def shipped_run(task_name: str, args) -> Optional[dict]:
    """The installed shipped pipeline of the task on the same test sets (None if not installed)."""
    task = TASKS[task_name]
    package = task["shipped"]
    results = args.output_dir / "runs" / "shipped_all_s0.json"
    if results.is_file():
        return json.loads(results.read_text())
    import importlib.util

    if package is None or importlib.util.find_spec(package) is None:
        return None
    out = REPO / "training" / "curve" / task_name / "shipped"
    record = {"task": task_name, "pipeline": "shipped", "size": "all", "seed": 0, "model": package}
    record["sentences"] = json.loads((REPO / f"corpus/curve/{task_name}/train_all.json").read_text())["sentences"]
    record.update(evaluate(package, task, out, out.parent / "shipped.log"))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=2) + "\n")
    return record


def summarise(runs: List[dict], splits: List[str]) -> List[dict]:
    """Per (size, pipeline): mean and sd over seeds; per size: the LM gain."""
    table = []
    for size in sorted({r["size"] for r in runs}, key=lambda s: float("inf") if s == "all" else int(s)):
        at = [r for r in runs if r["size"] == size]
        row = {"size": size, "sentences": at[0]["sentences"]}
        for pipeline in LABELS:
            mine = [r for r in at if r["pipeline"] == pipeline]
            if not mine:
                continue
            row[pipeline] = {}
            for split in splits:
                vals = [r[split] for r in mine]
                row[pipeline][split] = {
                    "mean": round(statistics.mean(vals), 2),
                    "sd": round(statistics.stdev(vals), 2) if len(vals) > 1 else None,
                    "seeds": len(vals),
                }
        for split in splits:
            for pipeline, _, _ in COLUMNS:
                if "nolm" in row and pipeline in row:
                    gain = round(row[pipeline][split]["mean"] - row["nolm"][split]["mean"], 2)
                    row.setdefault(gain_key(pipeline), {})[split] = gain
        table.append(row)
    return table


def gain_key(pipeline: str) -> str:
    """The summary key of a pipeline's gain over no LM (``lm_gain`` for LD-Net)."""
    return "lm_gain" if pipeline == "ldnet" else f"{pipeline}_gain"


def markdown(table: List[dict], splits: List[str], title: str) -> str:
    """One table per evaluation set: F1 mean (sd) over seeds, and the gains over no LM.
    The seeds column is the most seeds of any pipeline in the row; a cell over
    fewer seeds says how many."""

    def cell(row, pipeline, split, seeds):
        if pipeline not in row:
            return ""
        c = row[pipeline][split]
        text = f"{c['mean']:.2f}" + (f" ({c['sd']:.2f})" if c["sd"] is not None else "")
        return text + (f", {c['seeds']} seed{'s' if c['seeds'] > 1 else ''}" if c["seeds"] < seeds else "")

    def gain(row, key, split):
        value = row.get(key, {}).get(split)
        return "" if value is None else f"{value:+.2f}"

    columns = [(p, label, gain_header) for p, label, gain_header in COLUMNS if any(p in row for row in table)]
    lines = []
    for split in splits:
        header = "| training sentences | seeds | no LM | " + " | ".join(f"{label} | {h}" for _, label, h in columns) + " |"
        lines += [f"{title}, {SPLIT_TITLES[split]}: F1, mean (sd) over seeds", "", header,
                  "|" + "---|" * (3 + 2 * len(columns))]
        for row in table:
            seeds = max((row[p][split]["seeds"] for p in ["nolm"] + [p for p, _, _ in columns] if p in row), default=0)
            if not seeds:
                continue
            size = f"{row['sentences']:,}" + (" (all)" if row["size"] == "all" else "")
            cells = [cell(row, "nolm", split, seeds)]
            for p, _, _ in columns:
                cells += [cell(row, p, split, seeds), gain(row, gain_key(p), split)]
            lines.append(f"| {size} | {seeds} | " + " | ".join(cells) + " |")
        for row in table:
            if "shipped" in row:
                lines += ["", f"Shipped pipeline (all training sentences, pruned, trimmed vectors): "
                          f"{row['shipped'][split]['mean']:.2f}"]
        lines.append("")
    return "\n".join(lines)


def plot(table: List[dict], splits: List[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    # Tick labels at the measured sizes only (log-scale minor labels overlap).
    sizes = sorted({row["sentences"] for row in table})
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for pipeline, marker in (("nolm", "o"), ("ldnet_unk", "x"), ("pruned_unk", "v"), ("ldnet", "s"), ("pruned", "^"), ("shipped", "*")):
            pts = [(row["sentences"], row[pipeline][split]) for row in table if pipeline in row]
            if not pts:
                continue
            ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts], yerr=[p[1]["sd"] or 0.0 for p in pts],
                        marker=marker, capsize=3, label=LABELS[pipeline], linestyle="-" if len(pts) > 1 else "none")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training sentences")
        ax.set_ylabel("F1")
        ax.set_title(f"{title}: {SPLIT_TITLES[split]}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_size(text: str) -> Optional[int]:
    return None if text == "all" else int(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--sizes", default="250,500,1000,2000,5000,all", help="training sentences per run; 'all' is the whole set")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--seeds-up-to", type=int, default=2000, help="sizes above this run the first seed only")
    p.add_argument("--pipelines", default="nolm,ldnet", help="nolm, ldnet, and for NER ldnet_unk (LD-Net with <unk> for words outside the LM vocabulary)")
    p.add_argument("--pruned-sizes", default="", help="sizes at which the LD-Net runs (ldnet, ldnet_unk) are also pruned")
    p.add_argument("--lambda1", type=int, default=6, help="layer budget of the pruned pipelines")
    p.add_argument("--prune-steps", type=int, default=300, help="layer-selection steps and fine-tuning steps")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("--output-dir", type=Path, default=None, help="default: benchmarks/results/learning_curve_TASK")
    p.add_argument("--report-only", action="store_true", help="only summarise the finished runs")
    args = p.parse_args()
    task = TASKS[args.task]
    args.output_dir = (args.output_dir or REPO / "benchmarks" / "results" / f"learning_curve_{args.task}").resolve()
    sizes = [parse_size(x) for x in args.sizes.split(",") if x]
    seeds = [int(x) for x in args.seeds.split(",")]
    pruned_sizes = [parse_size(x) for x in args.pruned_sizes.split(",") if x]
    if not args.report_only:
        for n in sorted(set(sizes + pruned_sizes + [None]), key=lambda n: n or 10**12):
            target = REPO / "corpus" / "curve" / args.task / f"train_{size_name(n)}.spacy"
            if not (target.is_file() and target.with_suffix(".json").is_file()):
                got = make_subset(n, REPO / task["train"], target)
                target.with_suffix(".json").write_text(json.dumps({"sentences": got}) + "\n")
                print(f"wrote {target.relative_to(REPO)}: {got} sentences", flush=True)
        for data in task["test"].values():
            if not (REPO / data).is_file():
                raise SystemExit(f"{data} is missing: run `spacy project run convert .` (and convert-wikigold for NER)")

        def seeds_for(n):
            return seeds if n is not None and n <= args.seeds_up_to else seeds[:1]

        jobs = [(args.task, pl, n, s) for n in sizes for s in seeds_for(n) for pl in args.pipelines.split(",")]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: one_run(*job, args), jobs))
            pruned = [(args.task, p, n, s) for p, source in PRUNED.items() if source in args.pipelines.split(",")
                      for n in pruned_sizes for s in seeds_for(n)]
            list(pool.map(lambda job: one_run(*job, args), pruned))
        shipped_run(args.task, args)
    runs = [json.loads(f.read_text()) for f in sorted((args.output_dir / "runs").glob("*.json"))]
    splits = list(task["test"])
    table = summarise(runs, splits)
    summary = {"task": args.task, "steps": "2 per training sentence, within [1000, the config's max_steps]",
               "table": table, "runs": runs}
    (args.output_dir / "learning_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.output_dir / "learning_curve.md").write_text(markdown(table, splits, task["title"]))
    plot(table, splits, task["title"], args.output_dir / "learning_curve.png")
    print(markdown(table, splits, task["title"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
