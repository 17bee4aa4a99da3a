"""Tests of the LM checkpoint format (spacy_ldnet/lm/checkpoint.py) and ``lm-info``."""
import json

import pytest
import torch

from spacy_ldnet.lm import DenseLSTMLM, LMCheckpointError, LMConfig, load_lm, save_lm

torch.set_num_threads(1)

V = 30
VOCAB = ["<unk>", "<s>", "</s>", "a b", "ü", "\t", "x\ry", ""] + [f"w{i}" for i in range(V - 8)]


def make_lm(output="adaptive", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=V, embed_dim=6, hidden_dim=5, num_layers=3, output=output, cutoffs=(5, 12),
                   adaptive_div_value=2.0, target_dim=7, output_vocab_size=kw.pop("output_vocab_size", 0), **kw)
    table = torch.randn(cfg.target_vocab_size, 7)
    table[3] = 0
    return DenseLSTMLM(cfg, target_vectors=table)


def inputs():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, V, (3, 6), generator=g)
    return ids, torch.tensor([6, 2, 4]), torch.roll(ids, -1, 1) % 20


@pytest.mark.parametrize("output", ["softmax", "adaptive", "cosine", "vmf"])
def test_round_trip_float32_is_exact(tmp_path, output):
    lm = make_lm(output, output_vocab_size=20, proj_dim=4 if output == "softmax" else 0).eval()
    save_lm(lm, VOCAB, tmp_path / "ckpt", extra={"step": 12, "note": "x"})
    loaded, vocab, extra = load_lm(tmp_path / "ckpt")
    assert vocab == VOCAB
    assert extra == {"step": 12, "note": "x"}
    assert loaded.config == lm.config
    assert not loaded.training
    ids, lengths, targets = inputs()
    assert torch.equal(loaded.encoder(ids, lengths), lm.encoder(ids, lengths))
    a, b = lm(ids, lengths, targets), loaded(ids, lengths, targets)
    assert torch.equal(a.loss_sum, b.loss_sum) and a.n_targets == b.n_targets
    for name, t in lm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["format"] == "spacy-ldnet-lm" and meta["version"] == 1
    assert meta["hidden_dim"] == 5 and meta["output"] == output


@pytest.mark.parametrize("output", ["adaptive", "vmf"])
def test_round_trip_float16_within_tolerance(tmp_path, output):
    lm = make_lm(output).eval()
    save_lm(lm, VOCAB, tmp_path, dtype="float16")
    f32 = tmp_path.parent / (tmp_path.name + "_32")
    save_lm(lm, VOCAB, f32)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.6 * (f32 / "model.safetensors").stat().st_size
    loaded, _, _ = load_lm(tmp_path)
    assert loaded.encoder.embedding.weight.dtype == torch.float32
    ids, lengths, targets = inputs()
    torch.testing.assert_close(loaded.encoder(ids, lengths), lm.encoder(ids, lengths), atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(loaded(ids, lengths, targets).loss, lm(ids, lengths, targets).loss,
                               atol=5e-3, rtol=5e-3)
    assert not torch.equal(loaded.encoder.embedding.weight, lm.encoder.embedding.weight)


def test_freeze_and_direction_restored(tmp_path):
    lm = make_lm("softmax", direction="backward")
    lm.set_input_embeddings(torch.randn(V, 6), freeze=True)
    save_lm(lm, VOCAB, tmp_path)
    loaded, _, _ = load_lm(tmp_path)
    assert loaded.config.freeze_input and loaded.config.direction == "backward"
    assert not loaded.encoder.embedding.weight.requires_grad
    assert loaded.encoder.layers[0].weight_ih_l0.requires_grad


def test_continuous_target_table_is_stored(tmp_path):
    lm = make_lm("cosine")
    save_lm(lm, VOCAB, tmp_path)
    loaded, _, _ = load_lm(tmp_path)
    assert torch.equal(loaded.output_layer.target_vectors, lm.output_layer.target_vectors)
    assert loaded.output_layer.has_vector.tolist() == lm.output_layer.has_vector.tolist()
    assert not loaded.output_layer.has_vector[3]


def test_save_rejects_bad_input(tmp_path):
    lm = make_lm()
    with pytest.raises(ValueError, match="vocab"):
        save_lm(lm, VOCAB[:-1], tmp_path)
    with pytest.raises(ValueError, match="newline"):
        save_lm(lm, ["a\nb"] + VOCAB[1:], tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        save_lm(lm, VOCAB, tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="JSON"):
        save_lm(lm, VOCAB, tmp_path, extra={"bad": object()})


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(LMCheckpointError, match="not found"):
        load_lm(tmp_path / "nope")
    save_lm(make_lm(), VOCAB, tmp_path)
    for name in ("vocab.txt", "model.safetensors", "config.json"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).unlink()
        with pytest.raises(LMCheckpointError, match=name):
            load_lm(tmp_path)
        (tmp_path / name).write_bytes(data)
    load_lm(tmp_path)


def _edit_config(path, **changes):
    meta = json.loads((path / "config.json").read_text())
    meta.update(changes)
    (path / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"format": "other"}, "format"),
        ({"version": 99}, "version"),
        ({"hidden_dim": -3}, "invalid LM config"),
        ({"weights_dtype": "int4"}, "weights_dtype"),
    ],
)
def test_wrong_format_version_or_config(tmp_path, changes, match):
    save_lm(make_lm(), VOCAB, tmp_path)
    _edit_config(tmp_path, **changes)
    with pytest.raises(LMCheckpointError, match=match):
        load_lm(tmp_path)


def test_invalid_json(tmp_path):
    save_lm(make_lm(), VOCAB, tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LMCheckpointError, match="config.json"):
        load_lm(tmp_path)


@pytest.mark.parametrize("changes", [{"hidden_dim": 6}, {"num_layers": 2}, {"embed_dim": 5}])
def test_shape_mismatch(tmp_path, changes):
    save_lm(make_lm(), VOCAB, tmp_path)
    _edit_config(tmp_path, **changes)
    with pytest.raises(LMCheckpointError, match="model.safetensors") as info:
        load_lm(tmp_path)
    assert "Fix" in str(info.value)


def test_vocab_size_mismatch(tmp_path):
    save_lm(make_lm(), VOCAB, tmp_path)
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB[:-2]), encoding="utf8")
    with pytest.raises(LMCheckpointError, match="vocab.txt"):
        load_lm(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.0])
def test_truncated_weights(tmp_path, keep):
    save_lm(make_lm(), VOCAB, tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(LMCheckpointError, match="truncated or corrupt"):
        load_lm(tmp_path)


def test_corrupt_header(tmp_path):
    save_lm(make_lm(), VOCAB, tmp_path)
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:20] = b"\xff" * 12
    path.write_bytes(bytes(data))
    with pytest.raises(LMCheckpointError, match="model.safetensors"):
        load_lm(tmp_path)


def test_overwrite_leaves_no_temp_files(tmp_path):
    save_lm(make_lm(seed=1), VOCAB, tmp_path)
    lm2 = make_lm(seed=2).eval()
    save_lm(lm2, VOCAB, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    loaded, _, _ = load_lm(tmp_path)
    assert torch.equal(loaded.encoder.embedding.weight, lm2.encoder.embedding.weight)


# ---------------------------------------------------------------------------
# lm-info
# ---------------------------------------------------------------------------


def test_lm_info_cli(tmp_path):
    cli = pytest.importorskip("spacy_ldnet.cli")
    from typer.testing import CliRunner

    lm = make_lm("vmf")
    save_lm(lm, VOCAB, tmp_path, extra={"step": 5})
    runner = CliRunner()
    res = runner.invoke(cli.app, ["lm-info", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["direction"] == "forward" and info["num_layers"] == 3
    assert info["embed_dim"] == 6 and info["hidden_dim"] == 5 and info["encoder_output_dim"] == 6 + 3 * 5
    params = info["parameters"]
    assert params["encoder"] == sum(p.numel() for p in lm.encoder.layers.parameters())
    assert params["input_embedding"] == V * 6
    assert params["output_layer"] == (6 + 15) * 7 + 7
    assert params["total"] == sum(p.numel() for p in lm.parameters())
    assert info["multiply_adds_per_token"]["encoder"] == sum(4 * 5 * (6 + 5 * l + 5) for l in range(3))
    assert info["frozen_target_table"] == {"shape": [V, 7], "rows_with_vector": V - 1}
    assert info["extra"] == {"step": 5}
    res = runner.invoke(cli.app, ["lm-info", str(tmp_path)])
    assert res.exit_code == 0 and "backward" not in res.output and "forward" in res.output
    assert "mult-adds" in res.output
    res = runner.invoke(cli.app, ["lm-info", str(tmp_path / "missing")])
    assert res.exit_code == 1
