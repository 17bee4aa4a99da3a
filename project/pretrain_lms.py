"""Project step ``pretrain``: provide the forward and backward LMs in OUT/{forward,backward}.

Usage: python project/pretrain_lms.py OUT --enabled 0|1 --data-dir DIR [--gpu N]
       [--max-time 6h] [--threads 1] [--runs lms/runs]

* ``--enabled 0`` (the project default, ``vars.pretrain``): copy the LMs that
  ship with spacy_ldnet (``spacy_ldnet/lm/default``) to OUT. Nothing is trained.
* ``--enabled 1``: pretrain both directions with ``spacy-ldnet pretrain-lm``
  (the settings of the shipped LMs, docs/lm_pretraining.md) on
  DIR/lm/{wiki_en.train,reuters21578}.tok.txt.gz, for ``--max-time`` each;
  ``--gpu N`` (>= 0) trains on cuda:N with bfloat16 autocast. Runs go to
  ``--runs`` and resume when the step is run again (longer ``--max-time``
  continues them). The final models are exported to OUT in float16.
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

FILES = ("config.json", "model.safetensors", "vocab.txt")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--enabled", type=int, default=0)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--gpu", type=int, default=-1)
    p.add_argument("--max-time", default="6h")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="lms/runs")
    args = p.parse_args()
    out = Path(args.out)
    if not args.enabled:
        from spacy_ldnet.embed.lm_embedder import default_lm_path

        src = default_lm_path()
        for direction in ("forward", "backward"):
            (out / direction).mkdir(parents=True, exist_ok=True)
            for name in FILES:
                shutil.copyfile(src / direction / name, out / direction / name)
        print(f"Pretraining is off (vars.pretrain = 0): copied the shipped LMs from {src} to {out}.")
        return 0

    lm_dir = Path(args.data_dir) / "lm"
    files = [lm_dir / "wiki_en.train.tok.txt.gz", lm_dir / "reuters21578.tok.txt.gz"]
    valid = lm_dir / "wiki_en.valid.tok.txt.gz"
    for f in files + [valid]:
        if not f.is_file():
            print(f"Error: LM corpus file not found: {f}. Fix: set vars.data_dir to the folder holding lm/.", file=sys.stderr)
            return 1
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    vocab = runs / "vocab30k.txt"
    if not vocab.is_file():
        from spacy_ldnet.lm.data import build_vocab

        v, _ = build_vocab([str(f) for f in files], max_size=30000)
        v.save(str(vocab))
    device = f"cuda:{args.gpu}" if args.gpu >= 0 else "cpu"
    for direction in ("forward", "backward"):
        cmd = [
            "spacy-ldnet", "pretrain-lm",
            *[x for f in files for x in ("--train", str(f))],
            "--valid", str(valid), "--output", str(runs / direction), "--direction", direction,
            "--vocab", str(vocab), "--output-layer", "vmf", "--layers", "10", "--hidden", "128",
            "--embed-dim", "50", "--input-embeddings", "glove", "--freeze-input", "--dropout", "0.0",
            "--layer-dropout", "0.1", "--batch-size", "32" if device == "cpu" else "128",
            "--lr", "0.001", "--max-time", args.max_time, "--checkpoint-every", "300",
            "--eval-every", "1500", "--valid-tokens", "20000", "--nn-eval-tokens", "20000",
            "--seed", "1", "--threads", str(args.threads), "--device", device, "--no-progress",
        ]
        print("Running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    from spacy_ldnet.lm.pretrain import export_model

    for direction in ("forward", "backward"):
        export_model(runs / direction, out / direction, dtype="float16")
    print(f"Exported the pretrained LMs to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
