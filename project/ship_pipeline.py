"""Turn a trained pipeline into a pipeline package that ships with spacy-ldnet.

Usage:
  python project/ship_pipeline.py PIPELINE --name ldnet_conll03 --dev DEV.spacy --test TEST.spacy
      [--spans-key chunks] [--rows 50000] [--train-command "spacy train ..."]

Steps, each a command a user could run alone:
  1. ``spacy-ldnet trim-vectors`` (the word table keeps its first --rows rows, as --dtype);
  2. ``spacy-ldnet calibrate`` on DEV (the temperature of the span probabilities);
  3. ``spacy evaluate --gold-preproc`` of the untrimmed and the shipped pipeline on DEV and TEST;
  4. ``project/benchmark_speed.py`` (spacy benchmark speed, batch 128, 1 thread) on TEST;
  5. ``spacy package --build none`` with a model card in meta.json, moved to
     ``pipelines/en_NAME`` (a pip-installable pipeline package; setup.py installs it);
  6. the package's output on :data:`EXAMPLES` into ``tests/fixtures/shipped/en_NAME.expected.json``,
     which the tests compare with (a stale or broken artifact fails CI).

Figures go to ``metrics/shipped/en_NAME.*``. No corpus text goes into the package.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from shipped_examples import annotate  # noqa: E402

VERSION = "0.1.0"


def shown(cmd) -> str:
    """The command as a user would type it in the repository root."""
    line = " ".join(str(c) for c in cmd)
    line = line.replace(f"{sys.executable} -m spacy_ldnet.cli", "spacy-ldnet").replace(sys.executable, "python")
    return line.replace(f"{REPO}/", "")


def run(cmd, log):
    print("$ " + shown(cmd), flush=True)
    log.append(shown(cmd))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def cpu_name() -> str:
    from spacy_ldnet.prune.report import cpu_model

    return cpu_model() or platform.processor() or platform.machine()


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def f1_key(spans_key):
    return f"spans_{spans_key}_f" if spans_key else "ents_f"


def read_f1(path: Path, spans_key) -> float:
    return round(100 * json.loads(path.read_text())[f1_key(spans_key)], 2)


def summary_line(args) -> str:
    task = "chunks" if args.spans_key else "named entities"
    data = "CoNLL-2000" if args.spans_key else "CoNLL-2003"
    return f"LD-Net BiLSTM-CRF ({task}, pruned LM features, calibrated span probabilities) trained on {data}"


def model_card(name, args, scores, speed, size, calibration, commands) -> str:
    task = "chunks in `doc.spans[\"%s\"]`" % args.spans_key if args.spans_key else "named entities in `doc.ents`"
    data = "CoNLL-2000 chunking (WSJ text)" if args.spans_key else "CoNLL-2003 English NER (Reuters news)"
    lines = [
        f"# {name}",
        "",
        f"LD-Net BiLSTM-CRF ({task}) with pruned dense LM features, trained on {data}. "
        "Every prediction carries its CRF span probability in `doc.spans[\"ldnet_ner_scores\"]` "
        f"(calibrated on dev: temperature {calibration['temperature']['after']:.3f}). Needs spacy-ldnet.",
        "",
        f"- Training data: {data}. The corpus is for research use; this package holds none of its text "
        "(weights, the LM vocabulary and GloVe 6B 50d rows only).",
        f"- Labels: {', '.join(args.labels)}.",
        f"- Scores (`spacy evaluate --gold-preproc`): dev F1 {scores['dev']:.2f}, test F1 {scores['test']:.2f}; "
        f"with the full GloVe table {scores['dev_full']:.2f} / {scores['test_full']:.2f}. "
        "The seed spread of this recipe is in docs/results.md of the spacy-ldnet repository.",
        f"- Speed: {speed['words_per_second']:,.0f} words/s (spacy benchmark speed, batch 128, 1 torch thread, {speed['cpu']}).",
        f"- Size: {size:.1f} MB on disk; word vectors: the {args.rows:,} most frequent GloVe rows, "
        f"fine-tuned values included, stored as {args.dtype}.",
        f"- Calibration (dev, 15 bins): ECE {calibration['before']['ece']:.4f} before, {calibration['after']['ece']:.4f} after.",
        "- Built with (in the spacy-ldnet repository):",
        *[f"  - `{c}`" for c in commands],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pipeline", type=Path)
    p.add_argument("--name", required=True, help="package name without the language prefix, e.g. ldnet_conll03")
    p.add_argument("--dev", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--spans-key", default=None)
    p.add_argument("--rows", type=int, default=200000)
    p.add_argument("--dtype", default="int8", help="storage of the kept vector rows (spacy-ldnet trim-vectors --dtype)")
    p.add_argument("--train-command", default=None, help="the command that trained PIPELINE, for the model card")
    p.add_argument("--selection", type=Path, default=None, help="the prune.json whose kept_layers PIPELINE's LMs were cut to")
    p.add_argument("--work", type=Path, default=REPO / "training" / "ship")
    args = p.parse_args()
    full = f"en_{args.name}"
    work, metrics = args.work / full, REPO / "metrics" / "shipped"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    metrics.mkdir(parents=True, exist_ok=True)
    log = [args.train_command] if args.train_command else []
    start = time.time()
    spacy_ldnet = [sys.executable, "-m", "spacy_ldnet.cli"]
    run([*spacy_ldnet, "trim-vectors", args.pipeline, work / "trimmed", "--rows", args.rows, "--dtype", args.dtype], log)
    run([*spacy_ldnet, "calibrate", work / "trimmed", args.dev, work / "calibrated"], log)
    calib_dir = work / "calibrated"
    for extra in ("calibration.json", "reliability.png"):
        shutil.move(str(calib_dir / extra), str(metrics / f"{full}.{extra}"))
    spans = ["--spans-key", args.spans_key] if args.spans_key else []
    for split, data in (("dev", args.dev), ("test", args.test)):
        run([sys.executable, "-m", "spacy", "evaluate", args.pipeline, data, "--output",
             metrics / f"{full}.full_vectors.{split}.json", "--gold-preproc", *spans], log)
        run([sys.executable, "-m", "spacy", "evaluate", calib_dir, data, "--output",
             metrics / f"{full}.{split}.json", "--gold-preproc", *spans], log)
    run([sys.executable, str(REPO / "project" / "benchmark_speed.py"), calib_dir, args.test,
         metrics / f"{full}.speed.json", "--threads", 1], log)
    speed = json.loads((metrics / f"{full}.speed.json").read_text())
    speed["cpu"] = cpu_name()
    (metrics / f"{full}.speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    scores = {s: read_f1(metrics / f"{full}.{s}.json", args.spans_key) for s in ("dev", "test")}
    scores.update({f"{s}_full": read_f1(metrics / f"{full}.full_vectors.{s}.json", args.spans_key) for s in ("dev", "test")})
    calibration = json.loads((metrics / f"{full}.calibration.json").read_text())
    size = size_mb(calib_dir)
    meta = {
        "lang": "en",
        "name": args.name,
        "version": VERSION,
        "description": "",
        "author": "spacy-ldnet",
        "license": "MIT (weights); GloVe 6B vectors: PDDL 1.0",
        "sources": [
            {"name": "CoNLL-2000 chunking" if args.spans_key else "CoNLL-2003 English NER",
             "license": "research use only; no corpus text is in this package"},
            {"name": "GloVe 6B 50d", "author": "Pennington, Socher & Manning (2014)", "license": "PDDL 1.0"},
        ],
        "performance": {f"{s}_f1": scores[s] for s in ("dev", "test")} | {"words_per_second": round(speed["words_per_second"])},
    }
    commands = ([args.train_command] if args.train_command else []) + [shown(["python", *sys.argv])]
    meta["description"] = summary_line(args)
    import spacy

    args.labels = list(spacy.load(calib_dir).get_pipe("ldnet_ner").labels)
    (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (work / "package").mkdir()
    run([sys.executable, "-m", "spacy", "package", calib_dir, work / "package", "--name", args.name,
         "--version", VERSION, "--meta-path", work / "meta.json", "--build", "none", "--force"], log)
    dest = REPO / "pipelines" / full
    shutil.rmtree(dest, ignore_errors=True)
    shutil.move(str(work / "package" / f"{full}-{VERSION}"), str(dest))
    card = model_card(full, args, scores, speed, size, calibration, commands)
    for readme in (dest / "README.md", dest / full / f"{full}-{VERSION}" / "README.md"):
        readme.write_text(card + "\n" + readme.read_text())

    from spacy_ldnet.embed.lm_embedder import get_lm_module

    nlp = spacy.load(dest / full / f"{full}-{VERSION}")
    try:
        lm_cost = get_lm_module(nlp.get_pipe("ldnet_ner").model).multiply_adds_per_token()
    except ValueError:  # no LM features
        lm_cost = {"lm": 0, "projection": 0}
    kept = json.loads(args.selection.read_text())["kept_layers"] if args.selection else None
    expected = REPO / "tests" / "fixtures" / "shipped" / f"{full}.expected.json"
    expected.parent.mkdir(parents=True, exist_ok=True)
    expected.write_text(json.dumps(annotate(nlp, args.spans_key), indent=1) + "\n")
    summary = {"package": str(dest.relative_to(REPO)), "size_mb": round(size, 2), **scores,
               "words_per_second": round(speed["words_per_second"]), "cpu": speed["cpu"],
               "ece_before": calibration["before"]["ece"], "ece_after": calibration["after"]["ece"],
               "temperature": calibration["temperature"]["after"], "kept_layers": kept,
               "lm_multiply_adds_per_token": lm_cost, "commands": log,
               "seconds": round(time.time() - start)}
    (metrics / f"{full}.json").write_text(json.dumps(summary, indent=2) + "\n")
    for path in metrics.glob(f"{full}.*.json"):  # commands in the figures' files, as typed in the repository root
        path.write_text(path.read_text().replace(f"{sys.executable} -m", "python -m").replace(f"{REPO}/", ""))
    print(json.dumps({k: v for k, v in summary.items() if k != "commands"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
