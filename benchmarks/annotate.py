"""Throughput and memory of ``spacy-ldnet annotate``: 1 process, 2 processes, Ray with 2 actors.

The first ``TOKENS`` whitespace-separated tokens of INPUT (text, one document
per line, gzip or not; blank lines skipped), e.g. the Reuters-21578 LM text,
are copied to a temporary plain-text file, and the same command

    spacy-ldnet annotate PIPELINE input.txt OUT --threads 1 --no-progress [--n-process 2] [--ray]

runs once per mode, each from its own runner process, one after the other.
Per mode:

* ``wall_s``: the whole command, including Python start, imports, pipeline
  loading and (Ray) starting a local Ray instance and its actors;
* ``words_per_s``: the command's own figure, words (spaCy tokens) over the time
  from the pipeline loaded (Ray: from Ray started) to the last shard written;
* ``max_rss_mb``: ``ru_maxrss`` of the runner's waited-for descendants, i.e.
  the peak resident set of the largest single process (spaCy's worker
  processes and Ray's workers included once they have been reaped);
* ``tree_rss_mb`` (with psutil installed): the peak, sampled every 0.2 s, of
  the summed resident set of the command's whole process tree;
* ``output_md5``: of the concatenated shards, so the modes can be checked to
  write the same output.

Usage::

    python benchmarks/annotate.py training/conll03_ldnet/model-best \\
        ../shared/data/lm/reuters21578.tok.txt.gz 200000 --json benchmarks/results/annotate.json
"""
import argparse
import gzip
import hashlib
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"1-process": [], "2-processes": ["--n-process", "2"], "ray-2-actors": ["--ray", "--n-process", "2"]}
SUMMARY = re.compile(r"annotated (\d+) documents \((\d+) words\) in ([\d.]+) s, ([\d,.]+) words/s")


def take_tokens(source: Path, tokens: int, target: Path) -> dict:
    """Copy the first lines of ``source`` holding ``tokens`` tokens (at least) to ``target``."""
    opener = gzip.open if source.read_bytes()[:2] == b"\x1f\x8b" else open
    docs = words = 0
    with opener(source, "rt", encoding="utf8") as f, open(target, "w", encoding="utf8") as out:
        for line in f:
            if not line.strip():
                continue
            out.write(line if line.endswith("\n") else line + "\n")
            docs += 1
            words += len(line.split())
            if words >= tokens:
                break
    return {"docs": docs, "tokens": words}


def tree_rss_sampler(pid: int):
    """A function returning the summed RSS (MB) of process ``pid`` and its descendants, or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None

    def sample() -> float:
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    return sample


def run_one(args: argparse.Namespace) -> dict:
    """Runner process: one mode's command, timed and measured; returns a JSON-able dict."""
    out = Path(args.workdir) / f"out-{args.one}"
    command = ["spacy-ldnet", "annotate", args.pipeline, str(Path(args.workdir) / "input.txt"), str(out),
               "--threads", "1", "--no-progress", "--batch-size", str(args.batch_size),
               "--shard-size", str(args.shard_size), *MODES[args.one]]
    start = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sample, tree_peak = tree_rss_sampler(proc.pid), None
    while proc.poll() is None:
        if sample is not None:
            tree_peak = max(tree_peak or 0.0, sample())
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args.one}: spacy-ldnet annotate exited with {proc.returncode}:\n{stderr}")
    match = SUMMARY.search(stdout)
    digest = hashlib.md5()
    for path in sorted(out.glob("shard-*")):
        digest.update(path.read_bytes())
    return {
        "mode": args.one, "docs": int(match.group(1)), "words": int(match.group(2)), "wall_s": round(wall, 2),
        "annotate_s": float(match.group(3)), "words_per_s": round(int(match.group(2)) / max(float(match.group(3)), 1e-9)),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "tree_rss_mb": None if tree_peak is None else round(tree_peak, 1), "output_md5": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="A trained pipeline directory (or installed package).")
    parser.add_argument("input", type=Path, help="Plain text, one document per line, gzip or not (e.g. reuters21578.tok.txt.gz).")
    parser.add_argument("tokens", type=int, help="How many tokens of INPUT to annotate (about).")
    parser.add_argument("--modes", default=",".join(MODES), help=f"Comma-separated, of {', '.join(MODES)}.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    with tempfile.TemporaryDirectory(prefix="annotate-bench-") as workdir:
        corpus = take_tokens(args.input, args.tokens, Path(workdir) / "input.txt")
        rows = []
        for mode in modes:
            argv = [sys.executable, __file__, args.pipeline, str(args.input), str(args.tokens), "--one", mode, "--workdir", workdir,
                    "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            rows.append(json.loads(done.stdout))
    print(f"{corpus['docs']} documents, {corpus['tokens']} whitespace tokens of {args.input}")
    print("| mode | docs | words | wall s | words/s | max RSS MB (one process) | tree RSS MB (all) | output md5 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        tree = "-" if r["tree_rss_mb"] is None else r["tree_rss_mb"]
        print(f"| {r['mode']} | {r['docs']} | {r['words']} | {r['wall_s']} | {r['words_per_s']:,} | {r['max_rss_mb']} | {tree} | {r['output_md5'][:8]} |")
    if args.json:
        result = {"pipeline": args.pipeline, "input": str(args.input), **corpus, "cpu": platform.processor() or platform.machine(), "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()
