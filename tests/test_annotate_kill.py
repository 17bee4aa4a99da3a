"""``spacy-ldnet annotate`` killed with SIGKILL at a random point, then rerun:
every input document is in the output exactly once, in input order."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import srsly

from annotate_helpers import expected_records, read_shards, sentences
from spacy_ldnet.annotate import AnnotateSettings, annotate

SCRIPT = Path(sys.executable).parent / "spacy-ldnet"
N_DOCS = 6_000
SHARD_SIZE = 100


def shards_done(output: Path) -> int:
    try:
        return len(srsly.read_json(output / "manifest.json")["shards"])
    except (OSError, ValueError):  # not written yet, or being replaced
        return 0


def test_killed_run_resumes_with_every_document_once_in_order(trained_pipeline_path, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    texts = sentences(N_DOCS, seed=seed)
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf8")
    out = tmp_path / "out"
    argv = [str(SCRIPT), "annotate", str(trained_pipeline_path), str(path), str(out), "--shard-size", str(SHARD_SIZE), "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wanted = rng.randint(1, 10)
    deadline = time.monotonic() + 120
    while shards_done(out) < wanted and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.1))
    assert proc.poll() is None, f"the run ended before the kill (seed {seed}): {proc.stderr.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = shards_done(out)
    assert 0 < done < N_DOCS // SHARD_SIZE, f"seed {seed}"

    summary = annotate(str(trained_pipeline_path), str(path), out, AnnotateSettings(shard_size=SHARD_SIZE, progress=False))
    assert summary.skipped_docs >= done * SHARD_SIZE and summary.docs + summary.skipped_docs == N_DOCS, f"seed {seed}"
    assert read_shards(out) == expected_records(trained_pipeline_path, [{"text": t} for t in texts]), f"seed {seed}"
    assert not list(out.glob("*.tmp"))
