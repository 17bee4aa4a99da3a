"""project.yml: every workflow step exists and finds its inputs.

In each workflow, a step's deps must be written by an earlier step of that
workflow, be a file of this repository, or come from ``vars.data_dir``: otherwise
`spacy project run WORKFLOW .` stops at that step on a fresh clone.
"""
from pathlib import Path

import pytest
from weasel.util import load_project_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_project_config(ROOT)
COMMANDS = {c["name"]: c for c in CONFIG["commands"]}


@pytest.mark.parametrize("workflow", sorted(CONFIG["workflows"]))
def test_workflow_steps_exist_and_their_deps_come_from_earlier_steps(workflow):
    data_dir = CONFIG["vars"]["data_dir"]
    written = set()
    for step in CONFIG["workflows"][workflow]:
        assert step in COMMANDS, f"workflow {workflow} names an undefined command {step!r}"
        for dep in COMMANDS[step].get("deps", []):
            from_repo = (ROOT / dep).is_file() and not dep.startswith(("corpus/", "training/", "lms/", "packages/"))
            assert dep in written or from_repo or dep.startswith(data_dir), (
                f"{workflow}: step {step} needs {dep}, which no earlier step writes"
            )
        written.update(COMMANDS[step].get("outputs", []))


def test_the_main_command_runs_the_all_workflow_with_the_retraining():
    assert "spacy project run all" in (ROOT / "project" / "main.sh").read_text()
    steps = CONFIG["workflows"]["all"]
    assert steps.index("prune") < steps.index("retrain-pruned") < steps.index("evaluate-retrained")
