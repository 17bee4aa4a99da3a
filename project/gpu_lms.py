"""Train the forward and backward LMs on one GPU machine, both at once, and pack them.

Usage: python project/gpu_lms.py OUT [--data .devdata] [--device cuda:0] [--max-time 420s]
       [--batch 256] [--hidden 128] [--init-from-shipped] [--runs runs_gpu] [--chunk-mb 15]

For a machine that cannot read the data folder and has torch, numpy,
safetensors and typer but no spaCy. ``--data`` is the folder
``python project/lm_shard.py DIR`` writes: ``wiki_shard.tok.txt``,
``wiki_valid.tok.txt`` and ``glove_vocab30k.50d.txt``, each plain, ``.gz`` or
``.xz`` (an ``.xz`` file is decompressed to the run folder first).

Each direction runs ``spacy-ldnet pretrain-lm`` with the shipped LMs' settings
(``pretrain_lms.pretrain_lm_command``) except the batch (``--batch`` sentences), the
width (``--hidden``), no mid-run validation and checkpoints every 2,000 steps. The
vocabulary is the shipped LMs' (``spacy_ldnet/lm/default/forward/vocab.txt``).
``--init-from-shipped`` continues the shipped weights (then ``--hidden`` must be 128)
and exports with ``pretrain_lms.export_continuation``; otherwise the LMs start from
scratch and are exported with ``spacy_ldnet.lm.pretrain.export_model``. Both exports
are float16, in OUT/lms/{forward,backward}. Runs go to ``--runs`` and resume.

With ``--chunk-mb N`` (N > 0) OUT/lms and the logs are also packed into one tar
(``OUT/lms.tar``, no compression: float16 weights do not shrink) and split into
``OUT/lms.tar.part-NN`` files of at most N MiB, for transfers that limit the
size of a file; ``cat OUT/lms.tar.part-* | tar -x -C DEST`` joins them.

Exits non-zero, naming the direction and its log, when a run fails.
"""
import argparse
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "project"))
sys.path.insert(0, str(ROOT))

from pretrain_lms import export_continuation, pretrain_lm_command  # noqa: E402

SHIPPED = ROOT / "spacy_ldnet" / "lm" / "default"
NAMES = ("wiki_shard.tok.txt", "wiki_valid.tok.txt", "glove_vocab30k.50d.txt")


def find_input(data: Path, name: str, work: Path) -> Path:
    """``data/name`` as a file pretrain-lm reads (plain or gzip); an ``.xz`` copy is decompressed into ``work``."""
    for suffix in ("", ".gz"):
        if (data / (name + suffix)).is_file():
            return data / (name + suffix)
    xz = data / (name + ".xz")
    if xz.is_file():
        dest = work / name
        if not dest.is_file() or dest.stat().st_mtime < xz.stat().st_mtime:
            tmp = dest.with_suffix(".part")
            with lzma.open(xz, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)
            tmp.replace(dest)
        return dest
    sys.exit(f"Error: {data} has no {name}, {name}.gz or {name}.xz. "
             f"Fix: write it with `python project/lm_shard.py {data}`.")


def pack_chunks(folder: Path, out: Path, chunk_mb: int) -> list:
    """Tar ``folder`` (as ``folder.name``, uncompressed) and split the tar into
    ``out/NAME.tar.part-NN`` files of at most ``chunk_mb`` MiB; returns their paths.
    ``cat out/NAME.tar.part-* | tar -x`` restores the folder."""
    tar_path = out / f"{folder.name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=folder.name)
    size, chunk, parts = tar_path.stat().st_size, chunk_mb << 20, []
    with open(tar_path, "rb") as f:
        for i in range(max(1, (size + chunk - 1) // chunk)):
            parts.append(out / f"{folder.name}.tar.part-{i:02d}")
            parts[-1].write_bytes(f.read(chunk))
    tar_path.unlink()
    return parts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=ROOT / ".devdata")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--max-time", default="420s")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--init-from-shipped", action="store_true")
    p.add_argument("--runs", type=Path, default=ROOT / "runs_gpu")
    p.add_argument("--chunk-mb", type=int, default=0)
    a = p.parse_args(argv)
    if a.init_from_shipped and a.hidden != 128:
        sys.exit(f"Error: --init-from-shipped continues the shipped 10 x 128 LMs; --hidden {a.hidden} "
                 f"does not match. Fix: drop --hidden or --init-from-shipped.")
    a.runs.mkdir(parents=True, exist_ok=True)
    train, valid, glove = (find_input(a.data, n, a.runs) for n in NAMES)
    vocab = SHIPPED / "forward" / "vocab.txt"
    procs = {}
    for d in ("forward", "backward"):
        cmd = pretrain_lm_command(
            [train], valid, a.runs / d, d, vocab, a.device, a.max_time, a.threads,
            hidden=a.hidden, batch_size=a.batch, checkpoint_every=2000, eval_every=1_000_000, log_every=200,
        )
        cmd = [sys.executable, "-m", "spacy_ldnet.cli", *cmd[1:], "--glove", str(glove)]
        if a.init_from_shipped:
            cmd += ["--init-from", str(SHIPPED / d)]
        log = open(a.runs / f"{d}.stdout", "a", encoding="utf-8")
        procs[d] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}), log)
    failed = []
    for d, (proc, log) in procs.items():
        if proc.wait() != 0:
            failed.append(d)
        log.close()
    lms = a.out / "lms"
    for d in ("forward", "backward"):
        if d in failed:
            continue
        if a.init_from_shipped:
            export_continuation(a.runs / d, lms / d, [train])
        else:
            from spacy_ldnet.lm.pretrain import export_model

            export_model(a.runs / d, lms / d, dtype="float16")
        shutil.copy(a.runs / f"{d}.stdout", lms / f"{d}.stdout")
        for f in ("log.jsonl", "metrics.json"):
            if (a.runs / d / f).is_file():
                shutil.copy(a.runs / d / f, lms / f"{d}.{f}")
    for d in failed:
        print(f"Error: the {d} run failed; its output is in {a.runs / (d + '.stdout')}:", file=sys.stderr)
        print((a.runs / f"{d}.stdout").read_text(encoding="utf-8")[-3000:], file=sys.stderr)
    if a.chunk_mb > 0 and lms.is_dir():
        pack_chunks(lms, a.out, a.chunk_mb)
        shutil.rmtree(lms)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
