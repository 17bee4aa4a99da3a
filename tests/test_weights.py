"""Torch weights are saved as safetensors and loaded without unpickling.

Covers :mod:`spacy_ldnet.weights`: the safetensors round trip of a module's
state_dict, strict loading, the pickle-free reader of legacy ``torch.save``
archives (checked against what ``torch.save`` wrote), and a pipeline whose
weights carry a pickle payload, which ``spacy.load`` must refuse without
running it.
"""
import collections
import io
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import pytest
import spacy
import srsly
import torch
import torch._utils
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from conftest import make_examples, make_nlp
from spacy_ldnet.thinc_utils import torch_module
from spacy_ldnet.weights import (
    UnsafeWeightsError,
    WeightsError,
    deserialize_module,
    read_torch_zip,
    serialize_module,
    state_dict_from_bytes,
)

FIXTURES = Path(__file__).parent / "fixtures" / "pipelines_v0"


def torch_save_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def assert_same_tensors(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        assert torch.equal(got[name], want[name]), name


def assert_stored_exactly(stored, want):
    """A saved state holds every entry with its values; a float32 entry may be
    stored as float16 when all its values are float16 values."""
    assert sorted(stored) == sorted(want)
    for name, tensor in want.items():
        assert stored[name].dtype == tensor.dtype or (stored[name].dtype, tensor.dtype) == (torch.float16, torch.float32)
        assert torch.equal(stored[name].to(tensor.dtype), tensor), name


class Tied(torch.nn.Module):
    """Parameters, buffers of several dtypes, a tied weight and a non-contiguous buffer."""

    def __init__(self, width: int = 3):
        super().__init__()
        self.embed = torch.nn.Embedding(5, width)
        self.out = torch.nn.Linear(width, 5)
        self.out.weight = self.embed.weight  # shared storage between two entries
        self.lstm = torch.nn.LSTM(width, 2, batch_first=True)
        self.register_buffer("counts", torch.arange(6, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("transposed", torch.randn(4, 2).t())  # non-contiguous
        self.register_buffer("scalar", torch.tensor(2.5, dtype=torch.float16))


# ----------------------------------------------------------------- safetensors
def test_serialize_module_round_trips_every_entry_as_safetensors():
    torch.manual_seed(0)
    source = Tied()
    data = serialize_module(source)
    assert data[:2] != b"PK"  # not a torch.save archive
    assert_same_tensors(load_safetensors(data), {k: v.contiguous() for k, v in source.state_dict().items()})
    torch.manual_seed(1)
    target = Tied()
    assert not torch.equal(target.embed.weight, source.embed.weight)
    assert deserialize_module(target, data, torch.device("cpu")) is target
    assert_same_tensors(target.state_dict(), source.state_dict())
    assert target.out.weight is target.embed.weight  # loading keeps the module's own tying


def test_strict_loading_names_the_entry_and_both_shapes():
    wide = serialize_module(Tied(width=4))
    with pytest.raises(WeightsError, match=r"'embed.weight' has shape \(5, 4\) in the file but \(5, 3\) in the model"):
        deserialize_module(Tied(width=3), wide, torch.device("cpu"))
    state = load_safetensors(serialize_module(Tied()))
    del state["counts"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"missing entries \['counts'\], unexpected entries \['extra'\]"):
        deserialize_module(Tied(), save_safetensors(state), torch.device("cpu"))
    state = load_safetensors(serialize_module(Tied()))
    state["counts"] = state["counts"].float()
    with pytest.raises(WeightsError, match=r"'counts' is torch.float32 in the file but torch.int64"):
        deserialize_module(Tied(), save_safetensors(state), torch.device("cpu"))


@pytest.mark.parametrize("cut", ["truncated", "random", "empty"])
def test_corrupt_safetensors_bytes_give_a_weights_error(cut):
    data = serialize_module(Tied())
    bad = {"truncated": data[: len(data) // 2], "random": bytes(range(7, 250)) * 3, "empty": b""}[cut]
    with pytest.raises(WeightsError, match="not a valid safetensors buffer.*truncated or corrupt.*Fix:"):
        deserialize_module(Tied(), bad, torch.device("cpu"))


def safetensors_with_header_length(tensors, length: int) -> bytes:
    """``tensors`` as safetensors whose 8-byte header length is ``length`` (padded with metadata)."""
    base = int.from_bytes(save_safetensors(tensors, metadata={"pad": ""})[:8], "little")
    for pad in range(max(0, length - base - 16), length - base + 16):
        data = save_safetensors(tensors, metadata={"pad": "x" * pad})
        if int.from_bytes(data[:8], "little") == length:
            return data
    raise AssertionError(f"no padding gives a header of {length} bytes")


@pytest.mark.parametrize("first_bytes", [b"PK", b"\x80\x02"], ids=["zip-like", "pickle-like"])
def test_safetensors_whose_header_length_looks_like_another_format_still_load(first_bytes):
    tensors = {"w": torch.randn(2, 3)}
    data = safetensors_with_header_length(tensors, int.from_bytes(first_bytes, "little"))
    assert data.startswith(first_bytes)
    assert_same_tensors(state_dict_from_bytes(data, source="test"), tensors)


# ------------------------------------------------------ legacy torch.save zips
def test_legacy_reader_matches_torch_save_for_several_dtypes_and_layouts():
    torch.manual_seed(0)
    base = torch.randn(4, 6)
    state = collections.OrderedDict(
        f32=torch.randn(3, 2),
        f16=torch.randn(5).half(),
        bf16=torch.randn(2, 2).bfloat16(),
        i64=torch.randint(-(2**40), 2**40, (7,)),
        i8=torch.randint(-100, 100, (3,), dtype=torch.int8),
        flags=torch.rand(9) > 0.5,
        scalar=torch.tensor(-1.25),
        empty=torch.zeros(0, 3),
        transposed=torch.randn(3, 5).t(),
        base=base,
        view=base[1:3, ::2],  # shares base's storage, offset 6, stride (6, 2)
        param=torch.nn.Parameter(torch.randn(2)),  # pickled through _rebuild_parameter
    )
    got = read_torch_zip(torch_save_bytes(state))
    assert_same_tensors(got, {k: v.detach() for k, v in state.items()})
    assert got["view"].stride() == (6, 2) and got["transposed"].stride() == (1, 5)
    assert got["view"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()


def test_legacy_reader_reads_a_module_state_dict_with_its_metadata():
    module = Tied()
    saved = torch_save_bytes(module.state_dict())  # an OrderedDict carrying _metadata
    assert_same_tensors(read_torch_zip(saved), module.state_dict())
    target = Tied()
    deserialize_module(target, saved, torch.device("cpu"))
    assert_same_tensors(target.state_dict(), module.state_dict())


def rezip(data: bytes, edit) -> bytes:
    """``data`` (a zip) with each member's bytes replaced by ``edit(name, raw)`` (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            raw = edit(name, src.read(name))
            if raw is not None:
                dst.writestr(name, raw)
    return out.getvalue()


def test_legacy_reader_honours_a_big_endian_byteorder():
    state = {"w": torch.randn(3, 2), "n": torch.arange(4, dtype=torch.int64)}
    data = torch_save_bytes(state)
    dtypes = {"0": "f4", "1": "i8"}

    def to_big_endian(name, raw):
        import numpy

        if name.endswith("byteorder"):
            return b"big"
        key = name.rsplit("/", 1)[-1]
        if "/data/" in name:
            return numpy.frombuffer(raw, "<" + dtypes[key]).astype(">" + dtypes[key]).tobytes()
        return raw

    assert_same_tensors(read_torch_zip(rezip(data, to_big_endian)), state)


class Marker:
    """Writes ``path`` when unpickled: the payload of a crafted weights file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('ran')",))


class Call:
    """Pickles as a call of ``func`` (an allowed global) with ``args``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class Rebuild:
    """Pickles as a ``_rebuild_tensor_v2`` call with arbitrary arguments (for crafted archives)."""

    def __init__(self, storage, offset, size, stride, hooks=None):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict(hooks or {}))

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def crafted_zip(obj, storages) -> bytes:
    """A torch.save-style zip holding ``obj`` pickled with ``("storage", ...)`` persistent ids for
    the ``(key, raw bytes)`` entries of ``storages``, referenced in ``obj`` as ``Storage(key, numel)``."""

    class Storage:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                return ("storage", torch.FloatStorage, o.key, "cpu", o.numel)
            return None

    pkl = io.BytesIO()
    Pickler(pkl, protocol=2).dump(obj(Storage) if callable(obj) else obj)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pkl.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return out.getvalue()


FOUR_FLOATS = torch.arange(4, dtype=torch.float32).numpy().tobytes()


@pytest.mark.parametrize(
    "payload, found",
    [
        (lambda tmp: {"w": Marker(tmp / "marker")}, "the global __builtin__.exec"),
        (lambda tmp: {"w": shutil.rmtree}, "the global shutil.rmtree"),
        (lambda tmp: {"w": [1, 2]}, "the pickle opcode EMPTY_LIST"),
        (lambda tmp: {"w": 1.5}, "the pickle opcode BINFLOAT"),
        (lambda tmp: collections.Counter(a=1), "the global collections.Counter"),
        (lambda tmp: Marker(tmp / "marker"), "the global __builtin__.exec"),
        (lambda tmp: {"w": Call(collections.OrderedDict, "x")}, "a call of collections.OrderedDict with 1 arguments"),
        (
            lambda tmp: {"w": Call(torch._utils._rebuild_parameter, 1, 2, 3)},
            "a call of torch._utils._rebuild_parameter with 3 arguments",
        ),
    ],
    ids=["exec-payload", "function", "list", "float", "other-class", "bare-payload", "dict-args", "parameter-args"],
)
def test_legacy_reader_refuses_anything_but_a_state_dict_without_running_it(payload, found, tmp_path):
    data = torch_save_bytes(payload(tmp_path))
    with pytest.raises(UnsafeWeightsError, match=f"holds {found} at byte .*could run code.*Fix: .*nlp.to_disk"):
        read_torch_zip(data)
    assert not (tmp_path / "marker").exists()


def test_legacy_reader_refuses_a_rebuild_call_with_hooks():
    hooked = crafted_zip(lambda S: {"w": Rebuild(S("0", 4), 0, (4,), (1,), hooks={"h": 1})}, {"0": FOUR_FLOATS})
    with pytest.raises(UnsafeWeightsError, match="a tensor with backward hooks"):
        read_torch_zip(hooked)


def test_crafted_archive_reads_when_consistent():
    """The crafting helpers below write archives the reader accepts when nothing is wrong."""
    got = read_torch_zip(crafted_zip(lambda S: {"w": Rebuild(S("0", 4), 1, (3,), (1,))}, {"0": FOUR_FLOATS}))
    assert got["w"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda S: {"w": Rebuild(S("0", 4), 2, (3,), (1,))}, r"offset 2 reaches element 4 of a storage of 4"),
        (lambda S: {"w": Rebuild(S("0", 5), 0, (4,), (1,))}, r"holds 16 bytes, but its FloatStorage of 5 elements"),
        (lambda S: {"w": Rebuild(S("1", 4), 0, (4,), (1,))}, r"no archive/data/1 for storage '1'"),
        (lambda S: 7, r"hold a int, not a dict of named tensors"),
        (lambda S: {"w": Rebuild(S("0", 4), 0, (4,), (1,)), "step": 3}, r"the entry 'step': a int, not a tensor"),
    ],
    ids=["out-of-bounds", "short-storage", "missing-storage", "not-a-dict", "not-a-tensor"],
)
def test_legacy_reader_rejects_inconsistent_archives(make, message):
    with pytest.raises(WeightsError, match=message):
        read_torch_zip(crafted_zip(make, {"0": FOUR_FLOATS}))


@pytest.mark.parametrize("cut", ["truncated", "no-data-pkl", "truncated-pkl", "raw-pickle"])
def test_legacy_reader_rejects_truncated_archives(cut):
    data = torch_save_bytes({"w": torch.randn(3)})
    bad = {
        "truncated": lambda: data[: len(data) // 2],
        "no-data-pkl": lambda: rezip(data, lambda n, raw: None if n.endswith("data.pkl") else raw),
        "truncated-pkl": lambda: rezip(data, lambda n, raw: raw[:-3] if n.endswith("data.pkl") else raw),
        "raw-pickle": lambda: pickle.dumps({"w": 1}, protocol=2),
    }[cut]()
    expected = {
        "truncated": "truncated or corrupt zip archive",
        "no-data-pkl": "without exactly one NAME/data.pkl",
        "truncated-pkl": "data.pkl is truncated or corrupt",
        "raw-pickle": "bare pickle",
    }[cut]
    with pytest.raises(WeightsError, match=expected):
        deserialize_module(torch.nn.Linear(3, 1), bad, torch.device("cpu"))


# -------------------------------------------------------------- whole pipelines
@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory) -> Path:
    """A tiny initialised (untrained) ldnet_ner pipeline saved by this version."""
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp))
    path = tmp_path_factory.mktemp("weights") / "tiny"
    nlp.to_disk(path)
    return path


def shim_states(path: Path):
    """The ``"state"`` bytes of every torch shim in ``PATH/ldnet_ner/model`` (thinc's msgpack)."""
    msg = srsly.msgpack_loads((path / "ldnet_ner" / "model").read_bytes())
    return [srsly.msgpack_loads(shim)["state"] for shims in msg["shims"] for shim in shims]


def copy_with_states(source: Path, dest: Path, edit) -> Path:
    """A copy of the pipeline at ``source`` whose shim states are replaced by ``edit(state)``."""
    shutil.copytree(source, dest)
    model_file = dest / "ldnet_ner" / "model"
    msg = srsly.msgpack_loads(model_file.read_bytes())
    for shims in msg["shims"]:
        for i, shim_bytes in enumerate(shims):
            shim = srsly.msgpack_loads(shim_bytes)
            shim["state"] = edit(shim["state"])
            shims[i] = srsly.msgpack_dumps(shim)
    model_file.write_bytes(srsly.msgpack_dumps(msg))
    return dest


def torch_modules(nlp):
    model = nlp.get_pipe("ldnet_ner").model
    return [shim._model for node in model.walk() for shim in node.shims]


def test_a_saved_pipeline_holds_safetensors_weights(saved_pipeline):
    nlp = spacy.load(saved_pipeline)
    states, modules = shim_states(saved_pipeline), torch_modules(nlp)
    assert len(states) == len(modules) >= 2  # the embedder's and the tagger's torch modules
    for state, module in zip(states, modules):
        assert_stored_exactly(load_safetensors(state), module.state_dict())


@pytest.mark.parametrize("name", ["ner_charword_v1", "ner_lm_pruned_v1", "chunks_lm_v2"])
def test_resaving_a_legacy_pipeline_writes_safetensors(name, tmp_path):
    assert all(state[:2] == b"PK" for state in shim_states(FIXTURES / name))  # torch.save archives
    nlp = spacy.load(FIXTURES / name)
    nlp.to_disk(tmp_path / "resaved")
    states, modules = shim_states(tmp_path / "resaved"), torch_modules(nlp)
    assert len(states) == len(modules) >= 1
    for state, module in zip(states, modules):
        assert state[:2] != b"PK"
        assert_stored_exactly(load_safetensors(state), module.state_dict())


def test_spacy_load_refuses_a_pickle_payload_without_running_it(saved_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load would unpickle anything
    marker = tmp_path / "marker"
    payload = torch_save_bytes({"w": Marker(marker)})
    # The payload is live: this is what a torch.load-based loader did with it.
    torch.load(io.BytesIO(payload), weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    path = copy_with_states(saved_pipeline, tmp_path / "crafted", lambda state: payload)
    refused = r"ldnet_ner/model: .*not a plain weights file.*__builtin__\.exec.*could run code"
    with pytest.raises(ValueError, match=refused):
        spacy.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda state: state[: len(state) // 2], "not a valid safetensors buffer"),
        (lambda state: bytes(range(256)) * 4, "not a valid safetensors buffer"),
        (lambda state: b"", "not a valid safetensors buffer"),
        (
            lambda state: save_safetensors({k: torch.zeros(*v.shape, 2) for k, v in load_safetensors(state).items()}),
            r"entry '.+' has shape \(.+, 2\) in the file but \(.*\) in the model",
        ),
    ],
    ids=["truncated", "random-bytes", "empty", "shape-mismatch"],
)
def test_spacy_load_names_corrupt_or_mismatched_weights(saved_pipeline, tmp_path, edit, message):
    path = copy_with_states(saved_pipeline, tmp_path / "bad", edit)
    with pytest.raises(ValueError, match=f"ldnet_ner/model: .*{message}"):
        spacy.load(path)


def test_spacy_load_names_a_truncated_model_file(saved_pipeline, tmp_path):
    path = tmp_path / "cut"
    shutil.copytree(saved_pipeline, path)
    model_file = path / "ldnet_ner" / "model"
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"Could not load the ldnet_ner weights from .*ldnet_ner/model"):
        spacy.load(path)



def test_legacy_reader_raises_only_weights_errors_on_corrupted_pickles():
    """Random byte changes in data.pkl either still read or give a WeightsError, never another exception."""
    data = torch_save_bytes(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LSTM(2, 2)).state_dict())
    rng = random.Random(0)
    outcomes = collections.Counter()

    def corrupt(name, raw):
        if not name.endswith("data.pkl"):
            return raw
        raw = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)

    for _ in range(300):
        try:
            read_torch_zip(rezip(data, corrupt))
            outcomes["read"] += 1
        except WeightsError as e:
            outcomes[type(e).__name__] += 1
    assert outcomes["WeightsError"] and outcomes["UnsafeWeightsError"]  # both kinds of refusal were hit


def test_float32_entries_holding_only_float16_values_are_stored_as_float16_and_load_unchanged():
    torch.manual_seed(0)
    source = torch.nn.Linear(4, 3)
    with torch.no_grad():
        source.weight.copy_(torch.randn(3, 4).half().float())  # exactly representable: frozen LM weights
        source.bias.copy_(torch.tensor([0.1, float("nan"), 1e-9]))  # not: stays float32
    data = serialize_module(source)
    stored = load_safetensors(data)
    assert stored["weight"].dtype == torch.float16
    assert stored["bias"].dtype == torch.float32
    target = torch.nn.Linear(4, 3)
    deserialize_module(target, data, torch.device("cpu"))
    assert target.weight.dtype == torch.float32
    assert torch.equal(target.weight, source.weight)
    assert torch.equal(target.bias.nan_to_num(), source.bias.nan_to_num())
    assert len(data) < len(serialize_module(torch.nn.Linear(4, 3)))  # the float16 entry is smaller


def test_equal_entries_are_stored_once_and_both_load():
    class Twins(torch.nn.Module):  # a forward and a backward LM with the same frozen input embedding
        def __init__(self):
            super().__init__()
            self.forward_embed = torch.nn.Embedding(300, 20)
            self.backward_embed = torch.nn.Embedding(300, 20)
            self.small = torch.nn.Parameter(torch.ones(3))
            self.small_twin = torch.nn.Parameter(torch.ones(3))

    source = Twins()
    with torch.no_grad():
        source.backward_embed.weight.copy_(source.forward_embed.weight)
    data = serialize_module(source)
    stored = load_safetensors(data)
    assert "backward_embed.weight" not in stored and "forward_embed.weight" in stored
    assert "small_twin" in stored  # small entries are not shared
    target = deserialize_module(Twins(), data, torch.device("cpu"))
    assert_same_tensors(target.state_dict(), source.state_dict())
    target.forward_embed.weight.data[0, 0] = 5.0  # loaded as separate tensors
    assert target.backward_embed.weight[0, 0] != 5.0
    unequal = Twins()
    assert len(serialize_module(unequal)) > len(data)
