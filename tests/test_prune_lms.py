"""project/prune_lms.py: an LM pair cut to a layer selection, for training a tagger on it from scratch."""
import subprocess
import sys
from pathlib import Path

import torch

from spacy_ldnet.lm.checkpoint import load_lm

from test_lm_embedder import LM_LAYERS, tiny_lm_path  # noqa: F401 (tiny_lm_path: a fixture)

SCRIPT = Path(__file__).resolve().parents[1] / "project" / "prune_lms.py"


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_pruned_pair_equals_masked_full_pair(tiny_lm_path, tmp_path):
    keep = {"forward": [], "backward": [0, 2]}
    out = run_script(tiny_lm_path, tmp_path / "sel", "--forward", "", "--backward", "0,2")
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
    out = run_script(tiny_lm_path, tmp_path / "sel", "--backward", "0,x")
    assert out.returncode != 0
    assert "0,x" in out.stderr and "comma-separated" in out.stderr
    out = run_script(tiny_lm_path, tmp_path / "sel2", "--backward", f"0,{LM_LAYERS}")
    assert out.returncode != 0 and "--backward" in out.stderr
    assert not (tmp_path / "sel2").exists()  # nothing written, not even the valid forward selection
