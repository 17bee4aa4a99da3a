"""benchmarks/ddp_exit.py tells a clean exit from an abort and from other failures."""
import json
from pathlib import Path

from conftest import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ddp_exit.py"


def test_runs_are_classified_from_exit_status_output_and_metrics(tmp_path):
    bench = load_script(SCRIPT, "ddp_exit")
    done, empty = tmp_path / "done", tmp_path / "empty"
    done.mkdir(), empty.mkdir()
    (done / "metrics.json").write_text(json.dumps({"world_size": 2}))
    aborted = "terminate called without an active exception\n  exitcode  : -6 (pid: 1)"
    assert bench.classify(0, "Done: step 4", done) == "ok"
    assert bench.classify(1, aborted, done) == "abort"
    assert bench.classify(0, "Done", empty) == "failed"  # no metrics.json
    assert bench.classify(1, "Error: --train x: not found.", done) == "failed"
    assert bench.classify(None, "timed out", done) == "failed"
    (done / "metrics.json").write_text(json.dumps({"world_size": 1}))
    assert bench.classify(0, "Done", done) == "failed"


def test_the_command_is_a_two_process_torchrun_of_pretrain_lm(tmp_path):
    cmd = load_script(SCRIPT, "ddp_exit").command(tmp_path / "c.txt", tmp_path / "out", 3)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    assert cmd[cmd.index("-m", 2) + 1] == "spacy_ldnet.cli.pretrain_lm"
    assert cmd[cmd.index("--max-steps") + 1] == "3" and str(tmp_path / "out") in cmd
