"""``spacy-ldnet cut-lms``: an LM pair
cut to a layer selection, for training a tagger on it from scratch."""
import json
import subprocess
import sys

import pytest
import torch
from spacy.util import load_config, load_model_from_config

from spacy_ldnet.lm.checkpoint import load_lm

from conftest import assert_well_formed, make_examples, make_nlp, tiny_model_config
from test_prune_cli import assert_one_line_error
from test_lm_embedder import LM_LAYERS, tiny_lm_embedder, tiny_lm_path  # noqa: F401 (tiny_lm_path: a fixture)

CUT_LMS = [sys.executable, "-m", "spacy_ldnet.cli", "cut-lms"]


def cut_lms(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CUT_LMS, *map(str, args)], capture_output=True, text=True)


def test_pruned_pair_equals_masked_full_pair(tiny_lm_path, tmp_path):
    keep = {"forward": [], "backward": [0, 2]}
    out = cut_lms(tiny_lm_path, tmp_path / "sel", "--forward", "", "--backward", "0,2")
    assert out.returncode == 0, out.stderr
    ids = torch.randint(3, 20, (2, 7))
    lengths = torch.tensor([7, 4])
    for direction, kept in keep.items():
        full, vocab, _ = load_lm(tiny_lm_path / direction)
        small, small_vocab, extra = load_lm(tmp_path / "sel" / direction)
        assert small.config.num_layers == len(kept) and small_vocab == vocab
        assert extra["kept_layers"] == kept and extra["bos"] == "<s>"  # the embedder reads bos/unk from extra
        scales = torch.zeros(LM_LAYERS)
        scales[kept] = 1.0
        with torch.no_grad():
            want = full.encoder(ids, lengths, layer_scales=scales)[:, :, full.encoder.output_columns(kept)]
            got = small.encoder(ids, lengths)
        for b, n in enumerate(lengths.tolist()):  # padding positions are not compared
            torch.testing.assert_close(got[b, :n], want[b, :n], atol=1e-5, rtol=1e-5)


def test_bad_layer_list_is_named(tiny_lm_path, tmp_path):
    assert_one_line_error(cut_lms(tiny_lm_path, tmp_path / "sel", "--backward", "0,x"), "--backward '0,x'", "comma-separated")
    out = cut_lms(tiny_lm_path, tmp_path / "sel2", "--forward", "0", "--backward", f"0,{LM_LAYERS}")
    assert_one_line_error(out, f"--backward 0,{LM_LAYERS}", f"below {LM_LAYERS}")
    assert not (tmp_path / "sel2").exists()  # nothing written, not even the valid forward selection


def test_selection_and_config_out_give_a_config_that_fits_the_cut_lms(tiny_lm_path, tmp_path):
    """--selection reads a prune.json; --config-out sets the layer counts, so the
    tagger built from the new config takes the cut LMs and the old one does not."""
    nlp = make_nlp(tiny_model_config(tok2vec=tiny_lm_embedder()))
    nlp.config.to_disk(tmp_path / "ldnet.cfg")
    (tmp_path / "prune.json").write_text(json.dumps({"kept_layers": {"forward": [1], "backward": [0, 2]}}))
    out = cut_lms(tiny_lm_path, tmp_path / "sel", "--selection", tmp_path / "prune.json",
                     "--config", tmp_path / "ldnet.cfg", "--config-out", tmp_path / "retrain.cfg")
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "retrain.cfg")
    tok2vec = config["components"]["ldnet_ner"]["model"]["tok2vec"]
    assert (tok2vec["forward_layers"], tok2vec["backward_layers"]) == (1, 2)
    assert config["paths"]["lm"] == str(tmp_path / "sel")
    assert load_lm(tmp_path / "sel" / "forward")[2]["kept_layers"] == [1]
    examples = make_examples(nlp)
    retrained = load_model_from_config(config, auto_fill=True)
    retrained.vocab.vectors = nlp.vocab.vectors
    retrained.get_pipe("ldnet_ner").initialize(lambda: examples, nlp=retrained, lm_path=config["paths"]["lm"])
    assert_well_formed(retrained("Mary Jones works for Google in London ."), retrained.get_pipe("ldnet_ner").labels)
    with pytest.raises(ValueError, match="forward_layers"):  # the unchanged config does not fit the cut LMs
        nlp.get_pipe("ldnet_ner").initialize(lambda: examples, nlp=nlp, lm_path=str(tmp_path / "sel"))


def test_bad_selection_or_config_is_named_in_one_line_and_nothing_is_written(tiny_lm_path, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"dev_f1": {}}))
    (tmp_path / "no_lm.cfg").write_text("[paths]\nlm = null\n\n[components]\n")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"kept_layers": {"forward": [], "backward": [0]}}))
    cases = [
        ((tiny_lm_path, "--selection", tmp_path / "missing.json"), ["missing.json", "does not exist"]),
        ((tiny_lm_path, "--selection", tmp_path / "bad.json"), ["bad.json", "kept_layers"]),
        ((tiny_lm_path, "--selection", good, "--backward", "0"), ["not both"]),
        ((tiny_lm_path,), ["No layers given", "--forward"]),
        ((tiny_lm_path, "--selection", good, "--config", tmp_path / "no_lm.cfg", "--config-out", tmp_path / "x.cfg"), ["no_lm.cfg", "LD-Net config"]),
        ((tiny_lm_path, "--selection", good, "--config", tmp_path / "nope.cfg", "--config-out", tmp_path / "x.cfg"), ["nope.cfg"]),
        ((tiny_lm_path, "--selection", good, "--config", tmp_path / "no_lm.cfg"), ["go together"]),
        ((tiny_lm_path, "--selection", good, "--config", good, "--config-out", good), ["--config-out", "overwrite"]),
        ((tmp_path / "no_lms", "--backward", "0"), ["LM_DIR", "no_lms", "forward/ and backward/"]),
    ]
    for args, needles in cases:
        assert_one_line_error(cut_lms(args[0], tmp_path / "sel", *args[1:]), *needles)
        assert not (tmp_path / "sel").exists() and not (tmp_path / "x.cfg").exists()
    assert_one_line_error(cut_lms(tiny_lm_path, tiny_lm_path, "--backward", "0"), "is LM_DIR", "another OUT_DIR")
    for direction in ("forward", "backward"):
        (tmp_path / "empty_lms" / direction).mkdir(parents=True)
    assert_one_line_error(cut_lms(tmp_path / "empty_lms", tmp_path / "sel", "--backward", "0"), "config.json is missing")
    assert not (tmp_path / "sel").exists()
