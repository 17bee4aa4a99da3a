"""project/seeds.py: seed-averaged F1 and the gap between groups of runs."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "project" / "seeds.py"


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def write_run(folder: Path, run: str, dev: float, test: float, key: str = "ents_f") -> None:
    for split, f in (("dev", dev), ("test", test)):
        (folder / f"{run}.{split}.json").write_text(json.dumps({key: f, "token_acc": 1.0}))


def test_means_and_gap_follow_the_files(tmp_path):
    write_run(tmp_path, "a0", 0.90, 0.80)
    write_run(tmp_path, "a1", 0.92, 0.84)
    write_run(tmp_path, "b0", 0.95, 0.85, key="spans_chunks_f")
    out = run_script(tmp_path, "--group", "a=a0,a1", "--group", "b=b0", "--base", "a")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    mean_a = next(l for l in lines if l.strip().startswith("mean") and "+-" in l)
    assert "91.00 +- 1.41" in mean_a and "82.00 +- 2.83" in mean_a
    assert lines[-1] == "b - a: dev +4.00  test +3.00"


def test_missing_or_wrong_file_and_bad_group_are_named(tmp_path):
    write_run(tmp_path, "a0", 0.9, 0.8)
    (tmp_path / "bad.dev.json").write_text("{not json")
    (tmp_path / "noscore.dev.json").write_text(json.dumps({"token_acc": 1.0}))
    cases = {
        ("--group", "a=a0,missing"): "missing.dev.json: no such metrics file",
        ("--group", "a=bad"): "bad.dev.json: not a JSON file",
        ("--group", "a=noscore"): "noscore.dev.json: none of ents_f",
        ("--group", "a"): "expected NAME=RUN",
        ("--group", "a=a0", "--base", "b"): "--base 'b' is not one of the groups",
    }
    for args, message in cases.items():
        out = run_script(tmp_path, *args)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert out.stdout == ""
