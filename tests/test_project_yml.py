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


def test_the_main_command_runs_the_main_workflow_and_all_keeps_the_retraining():
    script = (ROOT / "project" / "main.sh").read_text()
    assert '["main"]' in script and 'spacy project run "$name"' in script
    main = CONFIG["workflows"]["main"]
    assert main.index("quick-train") < main.index("quick-prune") < main.index("quick-package") < main.index("quick-check-package")
    assert main.index("evaluate-shipped") < main.index("quick-train")
    steps = CONFIG["workflows"]["all"]
    assert steps.index("prune") < steps.index("retrain-pruned") < steps.index("evaluate-retrained")


def _spacy_ldnet_calls():
    """(command name, subcommand, [--options]) for every `spacy-ldnet SUB ...` script line."""
    import shlex

    for command in CONFIG["commands"]:
        for line in command.get("script", []):
            words = shlex.split(line)
            if "spacy-ldnet" not in words:
                continue
            rest = words[words.index("spacy-ldnet") + 1:]
            yield command["name"], rest[0], [w.split("=", 1)[0] for w in rest[1:] if w.startswith("--")]


def test_every_spacy_ldnet_option_in_project_yml_exists():
    """A renamed or misspelt flag would otherwise only fail hours into `spacy project run all`."""
    import typer.main

    from spacy_ldnet.cli import app

    group = typer.main.get_command(app)
    calls = list(_spacy_ldnet_calls())
    assert any(sub == "prune" and "--force-budget" in opts for _, sub, opts in calls)
    for name, sub, opts in calls:
        assert sub in group.commands, f"{name}: spacy-ldnet has no subcommand {sub!r}"
        known = {o for p in group.commands[sub].params for o in (*p.opts, *p.secondary_opts)}
        unknown = sorted(set(opts) - known)
        assert not unknown, f"{name}: spacy-ldnet {sub} has no option(s) {unknown}"
