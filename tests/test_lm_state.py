"""The resumable training state: safetensors + JSON, never a pickle."""
import json

import pytest
import torch

from spacy_ldnet.lm.pretrain import PretrainError, find_latest_checkpoint
from spacy_ldnet.lm.training.state import (
    STATE_JSON,
    STATE_TENSORS,
    StateFormatError,
    load_state,
    rng_state,
    save_state,
)


def _adam_state():
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.8, 0.95))
    p.grad = torch.randn(3, 2)
    opt.step()
    return opt.state_dict()


def test_round_trip_keeps_types_values_and_int_keys(tmp_path, monkeypatch):
    state = {
        "step": 7, "elapsed": 1.25, "world_size": 2, "name": "x", "none": None,
        "optimizer": _adam_state(),
        "rng": [rng_state(), rng_state()],
        "data": [{"epoch": 0, "files": ["a.txt"]}],
    }
    save_state(tmp_path, state)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the training state must load without an unpickler")

    import pickle

    for mod, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(mod, name, no_unpickling)
    back = load_state(tmp_path)
    monkeypatch.undo()
    assert {k: back[k] for k in ("step", "elapsed", "world_size", "name", "none", "data")} == \
        {k: state[k] for k in ("step", "elapsed", "world_size", "name", "none", "data")}
    opt = back["optimizer"]
    assert list(opt["state"]) == [0]  # int keys survive JSON
    assert opt["param_groups"][0]["betas"] == (0.8, 0.95)  # a tuple, as Adam wrote it
    for k, v in state["optimizer"]["state"][0].items():
        assert torch.equal(opt["state"][0][k], v) and opt["state"][0][k].dtype == v.dtype, k
    assert torch.equal(back["rng"][1]["torch"], state["rng"][1]["torch"])
    assert json.loads((tmp_path / STATE_JSON).read_text())["format"] == "spacy-ldnet-trainer-state"


def test_unsupported_values_are_refused_with_their_place(tmp_path):
    with pytest.raises(TypeError, match=r"state\.a\.b.*set"):
        save_state(tmp_path, {"a": {"b": {1, 2}}})


@pytest.mark.parametrize("damage", ["truncate_json", "truncate_tensors", "other_format", "missing_tensor"])
def test_damaged_state_names_the_file(tmp_path, damage):
    save_state(tmp_path, {"t": torch.ones(2), "n": 1})
    js, ts = tmp_path / STATE_JSON, tmp_path / STATE_TENSORS
    if damage == "truncate_json":
        js.write_text(js.read_text()[:10])
    elif damage == "truncate_tensors":
        ts.write_bytes(ts.read_bytes()[:20])
    elif damage == "other_format":
        js.write_text(json.dumps({"format": "something-else", "version": 1, "state": {}}))
    else:
        meta = json.loads(js.read_text())
        meta["state"]["t"] = {"__tensor__": "state.gone"}
        js.write_text(json.dumps(meta))
    with pytest.raises(StateFormatError) as e:
        load_state(tmp_path)
    assert str(ts if damage == "truncate_tensors" else js) in str(e.value)


def test_a_pickled_state_is_never_loaded(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000010"
    ckpt.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        (ckpt / name).write_text("x")
    (ckpt / "trainer_state.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    (ckpt.parent / "latest").write_text("step-00000010\n")
    with pytest.raises(PretrainError, match="trainer_state.pt") as e:
        find_latest_checkpoint(tmp_path / "run")
    assert f"--init-from {ckpt}" in str(e.value) and "pickle" in str(e.value)
