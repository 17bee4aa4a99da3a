"""Every name that setup.py declares resolves through spaCy's registries, and
the package's top-level import stays light."""
import ast
import importlib.metadata
import inspect
import json
import re
import subprocess
import sys

import pytest
import spacy
from spacy.language import Language

from conftest import REPO

DIST = "spacy-ldnet"

#: entry-point group -> spaCy registry. spaCy 3.8 reads the
#: ``spacy_factories`` group through ``registry._entry_point_factories`` (each
#: ``Language()`` loads them all, which runs ``@Language.factory``).
REGISTRIES = {
    "spacy_factories": "_entry_point_factories",
    "spacy_architectures": "architectures",
    "spacy_callbacks": "callbacks",
    "spacy_misc": "misc",
}


def _setup_entry_points():
    """The ``entry_points`` dict literal of setup.py, parsed (not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                if kw.arg == "entry_points":
                    return ast.literal_eval(kw.value)
    raise AssertionError("setup.py has no setup(entry_points=...)")


def _parse(spec: str):
    name, _, target = spec.partition("=")
    return name.strip(), target.strip()


SETUP_EPS = _setup_entry_points()
SPACY_EPS = [
    (group, *_parse(spec)) for group in REGISTRIES for spec in SETUP_EPS.get(group, [])
]


def test_setup_declares_the_spacy_groups():
    assert SETUP_EPS.get("spacy_factories"), "no spacy_factories entry point"
    assert SETUP_EPS.get("spacy_architectures"), "no spacy_architectures entry point"
    assert len(SPACY_EPS) >= 5


def test_installed_entry_points_match_setup_py():
    """A stale editable install (entry points from an older setup.py) would hide
    new names from spaCy: the installed metadata must equal setup.py."""
    installed = {
        (ep.group, ep.name, ep.value)
        for ep in importlib.metadata.distribution(DIST).entry_points
        if ep.group in REGISTRIES or ep.group == "console_scripts"
    }
    declared = {
        (group, *_parse(spec))
        for group in list(REGISTRIES) + ["console_scripts"]
        for spec in SETUP_EPS.get(group, [])
    }
    assert installed == declared, "re-run: pip install -e . --no-deps"


@pytest.mark.parametrize("group,name,target", SPACY_EPS, ids=[f"{g}:{n}" for g, n, _ in SPACY_EPS])
def test_entry_point_resolves_through_spacy_registry(group, name, target):
    module_name, _, attr = target.partition(":")
    registry = getattr(spacy.registry, REGISTRIES[group])
    assert name in registry, f"{name} not found in spacy.registry.{REGISTRIES[group]}"
    func = registry.get(name)
    assert callable(func)
    module = __import__(module_name, fromlist=[attr])
    assert func is getattr(module, attr), f"{name} resolves to {func!r}, setup.py says {target}"


#: Every architecture name that saved pipelines or shipped configs may name
#: (spacy-transformers keeps the same kind of list in its test_registry.py).
ARCHITECTURES = [
    "spacy_ldnet.CharWordEmbedder.v1",
    "spacy_ldnet.CharWordEmbedder.v2",
    "spacy_ldnet.LMEmbedder.v1",
    "spacy_ldnet.LMEmbedder.v2",
    "spacy_ldnet.LMEmbedder.v3",
    "spacy_ldnet.BiLSTMCRFTagger.v1",
    "spacy_ldnet.BiLSTMCRFTagger.v2",
]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_architecture_name_resolves(name):
    assert spacy.registry.has("architectures", name)
    assert callable(spacy.registry.get("architectures", name))


def test_every_architecture_a_config_or_saved_pipeline_names_is_listed():
    """The shipped configs and the saved pipelines under tests/fixtures name only listed architectures."""
    pattern = re.compile(r'@architectures\s*=\s*"(spacy_ldnet\.[^"]+)"')
    paths = list((REPO / "configs").glob("*.cfg")) + list((REPO / "tests" / "fixtures").rglob("config.cfg"))
    named = {name for path in paths for name in pattern.findall(path.read_text(encoding="utf8"))}
    assert {"spacy_ldnet.LMEmbedder.v2", "spacy_ldnet.BiLSTMCRFTagger.v2"} <= named  # the fixtures' v2 names
    assert named <= set(ARCHITECTURES)
    assert {name for _, name, _ in SPACY_EPS if name.startswith("spacy_ldnet.")} >= set(ARCHITECTURES)


def test_embedder_v2_names_are_the_v1_builders():
    get = spacy.registry.architectures.get
    assert get("spacy_ldnet.CharWordEmbedder.v2") is get("spacy_ldnet.CharWordEmbedder.v1")
    assert get("spacy_ldnet.LMEmbedder.v2") is get("spacy_ldnet.LMEmbedder.v1")


def test_lm_embedder_v3_changes_only_the_oov_vectors_default():
    get = spacy.registry.architectures.get
    v1, v3 = (inspect.signature(get(f"spacy_ldnet.LMEmbedder.{v}")).parameters for v in ("v1", "v3"))
    assert list(v1) == list(v3)
    changed = {name for name in v1 if v1[name].default != v3[name].default}
    assert changed == {"lm_oov_vectors"}
    assert (v1["lm_oov_vectors"].default, v3["lm_oov_vectors"].default) == (False, True)


def test_tagger_v2_changes_only_the_locked_dropout_default():
    get = spacy.registry.architectures.get
    v1, v2 = (inspect.signature(get(f"spacy_ldnet.BiLSTMCRFTagger.{v}")).parameters for v in ("v1", "v2"))
    assert list(v1) == list(v2)
    changed = {name for name in v1 if v1[name].default != v2[name].default}
    assert changed == {"locked_dropout"}
    assert (v1["locked_dropout"].default, v2["locked_dropout"].default) == (False, True)


def test_factory_known_to_language():
    nlp = spacy.blank("en")  # loads the spacy_factories entry points
    assert Language.has_factory("ldnet_ner")
    assert "ldnet_ner" in spacy.registry.factories
    meta = Language.get_factory_meta("ldnet_ner")
    assert "doc.ents" in meta.assigns
    assert spacy.registry.factories.get("ldnet_ner") is spacy.registry._entry_point_factories.get("ldnet_ner")
    pipe = nlp.add_pipe("ldnet_ner")  # default config builds without error
    assert type(pipe).__name__ == "LDNetNER"


def test_console_script_resolves():
    (spec,) = SETUP_EPS["console_scripts"]
    name, target = _parse(spec)
    assert name == "spacy-ldnet"
    module_name, _, attr = target.partition(":")
    module = __import__(module_name, fromlist=[attr])
    assert callable(getattr(module, attr))


def test_every_registration_in_the_source_is_an_entry_point():
    """A ``@registry.X("name")`` or ``@Language.factory("name")`` that setup.py
    does not declare is only found if something happens to import its module."""
    declared = {name for _, name, _ in SPACY_EPS}
    pattern = re.compile(r'@(?:registry\.\w+|Language\.factory|Language\.component)\(\s*"([^"]+)"')
    found = set()
    for path in (REPO / "spacy_ldnet").rglob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf8")))
    assert found, "no registrations found in spacy_ldnet/"
    assert found <= declared, f"registered but not declared in setup.py: {sorted(found - declared)}"


@pytest.mark.parametrize(
    "module,forbidden",
    [
        ("spacy_ldnet", ["torch", "spacy", "thinc"]),
        ("spacy_ldnet.glove", ["torch", "spacy", "thinc"]),
        ("spacy_ldnet.sequences", ["torch", "spacy", "thinc", "numpy"]),
    ],
)
def test_light_imports(module, forbidden):
    code = (
        "import sys, json, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([m for m in {forbidden!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], f"import {module} pulled in heavy modules"
