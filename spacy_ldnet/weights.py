"""The weights of a wrapped torch module as safetensors bytes, never as a pickle.

:func:`~spacy_ldnet.thinc_utils.wrap_torch` hands :func:`serialize_module` and
:func:`deserialize_module` to thinc's ``PyTorchWrapper_v3``, so the ``"state"``
bytes of every torch shim in a saved ``ldnet_ner/model`` file are a
safetensors buffer (https://huggingface.co/docs/safetensors): a JSON header
plus raw little-endian tensor data, which loading parses but never executes.

Pipelines saved by earlier versions hold a ``torch.save`` zip archive there
(a pickle, ``data.pkl``, plus one raw file per storage under ``data/``).
:func:`read_torch_zip` reads those without unpickling: it tokenises
``data.pkl`` with :func:`pickletools.genops` and evaluates the tokens in a
small stack machine that knows only what a ``state_dict`` holds
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``_rebuild_parameter``, the typed storage classes, tuples, ints, strings,
bools, ``None`` and persistent ids naming storages). Any other global, call or
opcode is refused with :class:`UnsafeWeightsError`. Saving such a pipeline
again (``nlp.to_disk``) writes safetensors.
"""
import io
import json
import pickletools
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy
import torch

from .about import __version__

SAFETENSORS_FIX = (
    f"Fix: load a trusted copy of the pipeline with spacy-ldnet {__version__} and save it again "
    f"(nlp.to_disk), which writes the weights as safetensors."
)

#: torch's typed storage classes -> (torch dtype, numpy dtype of the raw little-endian bytes)
_STORAGE_DTYPES: Dict[str, Tuple[torch.dtype, str]] = {
    "FloatStorage": (torch.float32, "f4"),
    "DoubleStorage": (torch.float64, "f8"),
    "HalfStorage": (torch.float16, "f2"),
    "BFloat16Storage": (torch.bfloat16, "u2"),  # numpy has no bfloat16: read the bits, view in torch
    "LongStorage": (torch.int64, "i8"),
    "IntStorage": (torch.int32, "i4"),
    "ShortStorage": (torch.int16, "i2"),
    "CharStorage": (torch.int8, "i1"),
    "ByteStorage": (torch.uint8, "u1"),
    "BoolStorage": (torch.bool, "u1"),
}


@dataclass(frozen=True)
class _Global:
    """A global a state_dict pickle may name (never imported: the stack machine acts on it)."""

    module: str
    name: str


#: data.pkl of a state_dict holds names, sizes and strides only (the tensor data is beside it)
_MAX_PICKLE_BYTES = 64 * 2**20
_ORDERED_DICT = _Global("collections", "OrderedDict")
_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")


class WeightsError(ValueError):
    """Saved weights are truncated, corrupt, or do not match the model they are loaded into.

    The message names the weights, the offending entry and the fix."""


class UnsafeWeightsError(WeightsError):
    """A legacy ``torch.save`` weights archive holds more than a plain ``state_dict``:
    unpickling it could run code, so it is refused without being unpickled."""


# ----------------------------------------------------------------- safetensors
def serialize_module(module: torch.nn.Module) -> bytes:
    """``module.state_dict()`` (parameters and buffers) as safetensors bytes.

    Tensors are copied to the host; a non-contiguous tensor is written
    contiguous, and a tensor sharing its storage with an earlier entry (tied
    weights, views) is written as its own copy. A float32 tensor whose every
    value is exactly a float16 value (the frozen LM weights, which are loaded
    from float16 checkpoints) is written as float16, half the bytes;
    :func:`load_state_dict_strict` reads it back into the float32 parameter
    unchanged. An entry equal to an earlier one (the identical input
    embeddings of a forward and a backward LM) is written once and named in
    the ``spacy_ldnet.same_as`` metadata. So every entry round-trips with its
    shape, dtype and values."""
    from safetensors.torch import save

    tensors: Dict[str, torch.Tensor] = {}
    same_as: Dict[str, str] = {}
    storages = set()
    for name, tensor in module.state_dict().items():
        tensor = _exact_half(tensor.detach().to("cpu").contiguous())
        twin = next((other for other, t in tensors.items() if t.dtype == tensor.dtype and t.shape == tensor.shape
                     and t.numel() >= _MIN_SHARED and torch.equal(t, tensor)), None)
        if twin is not None:
            same_as[name] = twin
            continue
        storage = tensor.untyped_storage().data_ptr()
        if tensor.untyped_storage().nbytes() and storage in storages:
            tensor = tensor.clone()
            storage = tensor.untyped_storage().data_ptr()
        storages.add(storage)
        tensors[name] = tensor
    return save(tensors, metadata={SAME_AS: json.dumps(same_as)} if same_as else None)


#: safetensors metadata key: ``{entry: earlier entry with the same values}`` (see :func:`serialize_module`).
SAME_AS = "spacy_ldnet.same_as"
#: Entries smaller than this are never shared (comparing them costs more than it saves).
_MIN_SHARED = 4096


def _safetensors_metadata(data: bytes) -> Dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header), or {}."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length].decode("utf8"))
    return header.get("__metadata__") or {}


def _exact_half(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float16 if it is float32 and the conversion loses nothing, else ``tensor``."""
    if tensor.dtype != torch.float32 or tensor.numel() == 0:
        return tensor
    half = tensor.to(torch.float16)
    return half if torch.equal(half.to(torch.float32), tensor) else tensor


def deserialize_module(module: torch.nn.Module, data: bytes, device: torch.device) -> torch.nn.Module:
    """Load weights saved by :func:`serialize_module` (or, for pipelines saved by
    earlier versions, a ``torch.save`` zip read by :func:`read_torch_zip`) into
    ``module`` and move it to ``device``. Returns ``module``.

    Raises:
        WeightsError: ``data`` is neither format, is truncated or corrupt, or its
            entries differ from ``module.state_dict()`` in names, shapes or dtype kind.
        UnsafeWeightsError: a ``torch.save`` archive holds anything but a plain state_dict.
    """
    source = f"the saved weights of {type(module).__name__}"
    state = state_dict_from_bytes(bytes(data), source=source)
    load_state_dict_strict(module, state, source=source)
    module.to(device)
    return module


def state_dict_from_bytes(data: bytes, *, source: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors buffer or a legacy ``torch.save`` zip archive,
    told apart by their first bytes: a zip starts with ``PK\\x03\\x04``, a
    safetensors buffer with an 8-byte header length followed by ``{``.
    ``source`` names the weights in errors.

    Raises: WeightsError, UnsafeWeightsError (see :func:`deserialize_module`)."""
    if data[:4] == b"PK\x03\x04" and data[8:9] != b"{":
        return read_torch_zip(data, source=source)
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(data)
        same_as = json.loads(_safetensors_metadata(data).get(SAME_AS, "{}"))
    except (SafetensorError, ValueError, OverflowError) as e:
        # A safetensors buffer may start with any byte (its header length), so a
        # pickle is only recognised once the buffer failed to parse.
        if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise UnsafeWeightsError(
                f"{source} are a bare pickle (torch.save of torch < 1.6), which is not read: unpickling it "
                f"could run code. {SAFETENSORS_FIX}"
            ) from None
        raise WeightsError(
            f"{source} ({len(data)} bytes) are not a valid safetensors buffer ({e}): the file is truncated "
            f"or corrupt. {SAFETENSORS_FIX}"
        ) from e
    if not isinstance(same_as, dict):
        raise WeightsError(f"{source}: the {SAME_AS} metadata is not a mapping. {SAFETENSORS_FIX}")
    for name, twin in same_as.items():
        if twin not in state:
            raise WeightsError(f"{source}: entry {name!r} refers to {twin!r}, which the file lacks. {SAFETENSORS_FIX}")
        state[name] = state[twin].clone()
    return state


def load_state_dict_strict(module: torch.nn.Module, state: Dict[str, torch.Tensor], *, source: str) -> None:
    """Copy ``state`` into ``module``; every name of ``module.state_dict()`` must be
    present with the same shape, no other name may be, and a floating-point entry
    must stay floating-point (a float16 entry fills a float32 parameter).

    Raises: WeightsError naming the first mismatching entries and both shapes."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WeightsError(
            f"{source} do not match the model: missing entries {missing[:5]}, unexpected entries "
            f"{unexpected[:5]}. Fix: load the weights with the config.cfg they were saved with."
        )
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise WeightsError(
                f"{source}: entry {name!r} has shape {tuple(got.shape)} in the file but {tuple(want.shape)} "
                f"in the model. Fix: load the weights with the config.cfg they were saved with."
            )
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise WeightsError(
                f"{source}: entry {name!r} is {got.dtype} in the file but {want.dtype} in the model. "
                f"Fix: load the weights with the config.cfg they were saved with."
            )
    with torch.no_grad():
        module.load_state_dict(state, strict=True)


# ------------------------------------------------------ legacy torch.save zips
def read_torch_zip(data: bytes, *, source: str = "the weights") -> Dict[str, torch.Tensor]:
    """The ``state_dict`` saved in a ``torch.save`` zip archive, read without unpickling.

    The archive holds ``NAME/data.pkl`` (the pickled dict, pickle protocol 2),
    ``NAME/data/KEY`` (one raw storage per key, in the byte order of
    ``NAME/byteorder``, little-endian when absent). Each tensor is rebuilt as
    ``storage.as_strided(size, stride, offset)`` from the arguments of its
    ``_rebuild_tensor_v2`` call, so views and storages shared between entries
    keep their layout.

    Raises:
        UnsafeWeightsError: ``data.pkl`` holds any global, call or opcode beyond
            what a plain ``state_dict`` of tensors needs.
        WeightsError: the archive is truncated or corrupt, a storage is missing,
            has the wrong length, or a tensor reaches outside its storage.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(
                f"{source} are a zip archive without exactly one NAME/data.pkl (found {pickles}), so not a "
                f"torch.save file. {SAFETENSORS_FIX}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
            raise WeightsError(
                f"{source}: {pickles[0]} declares {archive.getinfo(pickles[0]).file_size} bytes, more than a "
                f"state_dict's pickle ({_MAX_PICKLE_BYTES}); the file is corrupt. {SAFETENSORS_FIX}"
            )
        storages = _StorageReader(archive, prefix, byteorder, source)
        state = _StateDictUnpickler(archive.read(pickles[0]), storages.load, source).run()
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError, zlib.error) as e:
        raise WeightsError(f"{source} are a truncated or corrupt zip archive ({e}). {SAFETENSORS_FIX}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{source} hold a {type(state).__name__}, not a dict of named tensors. {SAFETENSORS_FIX}")
    for key, value in state.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            raise WeightsError(
                f"{source} hold the entry {key!r}: a {type(value).__name__}, not a tensor, so they are not a "
                f"state_dict. {SAFETENSORS_FIX}"
            )
    return dict(state)


class _StorageReader:
    """Reads ``PREFIX/data/KEY`` as a flat tensor of the storage's dtype, once per key."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str, source: str):
        if byteorder not in ("little", "big"):
            raise WeightsError(f"{source}: {prefix}byteorder is {byteorder!r}, not 'little' or 'big'.")
        self.archive, self.prefix, self.source = archive, prefix, source
        self.endian = "<" if byteorder == "little" else ">"
        self.loaded: Dict[str, torch.Tensor] = {}

    def load(self, storage_class: str, key: str, numel: int) -> torch.Tensor:
        dtype, np_dtype = _STORAGE_DTYPES[storage_class]
        if key in self.loaded:
            if self.loaded[key].dtype != dtype:
                raise WeightsError(
                    f"{self.source}: storage {key!r} is read both as {self.loaded[key].dtype} and {dtype}; "
                    f"the file is corrupt."
                )
            return self.loaded[key]
        member = f"{self.prefix}data/{key}"
        try:
            size = self.archive.getinfo(member).file_size
        except KeyError:
            raise WeightsError(f"{self.source}: the archive has no {member} for storage {key!r}.") from None
        itemsize = numpy.dtype(np_dtype).itemsize
        if size != numel * itemsize:
            raise WeightsError(
                f"{self.source}: {member} holds {size} bytes, but its {storage_class} of {numel} "
                f"elements needs {numel * itemsize}. The file is truncated or corrupt."
            )
        raw = self.archive.read(member)
        array = numpy.frombuffer(raw, dtype=self.endian + np_dtype).astype(np_dtype)  # native-order copy
        flat = torch.from_numpy(array)
        if dtype == torch.bool:
            flat = flat != 0
        elif dtype == torch.bfloat16:
            flat = flat.view(torch.bfloat16)
        self.loaded[key] = flat
        return flat


class _StateDictUnpickler:
    """Evaluates the :func:`pickletools.genops` tokens of a ``state_dict`` pickle.

    Only data opcodes and the few globals of a state_dict are understood;
    everything else raises :class:`UnsafeWeightsError` before any object is made."""

    _CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
    _LITERALS = {"BININT", "BININT1", "BININT2", "LONG1", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
    _IGNORED = {"PROTO", "FRAME"}

    def __init__(self, pickled: bytes, load_storage: Callable, source: str):
        self.pickled, self.load_storage, self.source = pickled, load_storage, source
        self.stack: List = []
        self.marks: List[int] = []  # stack heights at each open MARK
        self.memo: Dict[int, object] = {}
        self._dicts: Dict[int, dict] = {}  # the dicts this machine made (the only ones it fills), by id

    def refuse(self, what: str, pos) -> None:
        raise UnsafeWeightsError(
            f"{self.source} are not a plain weights file: their data.pkl holds {what} at byte {pos}, which a "
            f"saved state_dict never does. Unpickling it could run code, so it is not loaded. {SAFETENSORS_FIX}"
        )

    def run(self):
        try:
            for opcode, arg, pos in pickletools.genops(self.pickled):
                if opcode.name == "STOP":
                    return self.pop()
                self.step(opcode.name, arg, pos)
        except ValueError as e:
            if isinstance(e, WeightsError):
                raise
            raise WeightsError(f"{self.source}: data.pkl is truncated or corrupt ({e}). {SAFETENSORS_FIX}") from e
        raise WeightsError(f"{self.source}: data.pkl ends without STOP; the file is truncated. {SAFETENSORS_FIX}")

    def top(self):
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise WeightsError(f"{self.source}: data.pkl reads past the top of its stack; the file is corrupt.")
        return self.stack[-1]

    def pop(self):
        self.top()
        return self.stack.pop()

    def pop_to_mark(self) -> list:
        if not self.marks:
            raise WeightsError(f"{self.source}: data.pkl closes a MARK it never opened; the file is corrupt.")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def new_dict(self, ordered: bool) -> dict:
        made = OrderedDict() if ordered else {}
        self._dicts[id(made)] = made
        return made

    def step(self, name: str, arg, pos) -> None:
        stack = self.stack
        if name in self._IGNORED:
            return
        if name in self._CONSTANTS:
            stack.append(self._CONSTANTS[name])
        elif name in self._LITERALS:
            stack.append(arg)
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name == "POP":
            self.pop()
        elif name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[arg if name != "MEMOIZE" else len(self.memo)] = self.top()
        elif name in ("BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise WeightsError(f"{self.source}: data.pkl reads memo entry {arg} it never stored (byte {pos}).")
            stack.append(self.memo[arg])
        elif name == "TUPLE":
            stack.append(tuple(self.pop_to_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = [self.pop() for _ in range(int(name[-1]))]
            stack.append(tuple(reversed(items)))
        elif name == "EMPTY_DICT":
            stack.append(self.new_dict(ordered=False))
        elif name in ("SETITEM", "SETITEMS"):
            items = self.pop_to_mark() if name == "SETITEMS" else [self.pop(), self.pop()][::-1]
            self.set_items(items, pos)
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            module, qualname = arg.split(" ", 1) if name == "GLOBAL" else reversed([self.pop(), self.pop()])
            stack.append(self.find_global(str(module), str(qualname), pos))
        elif name == "BINPERSID":
            stack.append(self.persistent_load(self.pop(), pos))
        elif name == "REDUCE":
            args = self.pop()
            stack.append(self.reduce(self.pop(), args, pos))
        elif name == "BUILD":
            self.build(self.pop(), pos)
        else:
            self.refuse(f"the pickle opcode {name}", pos)

    def set_items(self, items: list, pos) -> None:
        target = self.top()
        if self._dicts.get(id(target)) is not target or len(items) % 2:
            self.refuse("an item assignment on something other than a dict", pos)
        for key, value in zip(items[::2], items[1::2]):
            if not isinstance(key, (str, int)):
                self.refuse(f"a dict key of type {type(key).__name__}", pos)
            target[key] = value

    def find_global(self, module: str, qualname: str, pos):
        found = _Global(module, qualname)
        if found in (_ORDERED_DICT, _REBUILD_TENSOR, _REBUILD_PARAMETER) or (
            module == "torch" and qualname in _STORAGE_DTYPES
        ):
            return found
        self.refuse(f"the global {module}.{qualname}", pos)

    def persistent_load(self, pid, pos) -> torch.Tensor:
        ok = isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[0], str) and pid[0] == "storage"
        if not ok or not (isinstance(pid[1], _Global) and pid[1].module == "torch"):
            self.refuse(f"the persistent id {pid!r} (not a typed torch storage)", pos)
        _, storage_type, key, _location, numel = pid
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            self.refuse(f"the persistent id {pid!r} (bad key or size)", pos)
        return self.load_storage(storage_type.name, key, numel)

    def reduce(self, func, args, pos):
        if not isinstance(args, tuple):
            self.refuse(f"a call with arguments of type {type(args).__name__}", pos)
        if not isinstance(func, _Global):
            self.refuse(f"a call of a {type(func).__name__}", pos)
        if func == _ORDERED_DICT and args == ():
            return self.new_dict(ordered=True)
        if func == _REBUILD_TENSOR and len(args) in (6, 7):
            return self.rebuild_tensor(*args[:6], pos=pos)
        if func == _REBUILD_PARAMETER and len(args) == 3 and isinstance(args[0], torch.Tensor):
            return args[0]
        self.refuse(f"a call of {func.module}.{func.name} with {len(args)} arguments", pos)

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, hooks, *, pos) -> torch.Tensor:
        ints = lambda t: isinstance(t, tuple) and all(isinstance(i, int) and i >= 0 for i in t)  # noqa: E731
        valid = isinstance(storage, torch.Tensor) and isinstance(offset, int) and offset >= 0
        if not (valid and ints(size) and ints(stride) and len(size) == len(stride) and isinstance(requires_grad, bool)):
            self.refuse(f"a tensor rebuilt from ({offset!r}, {size!r}, {stride!r}, {requires_grad!r})", pos)
        if not (isinstance(hooks, dict) and not hooks):
            self.refuse("a tensor with backward hooks", pos)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
        if last >= storage.numel():
            raise WeightsError(
                f"{self.source}: a tensor of size {size}, stride {stride} at offset {offset} reaches element "
                f"{last} of a storage of {storage.numel()}; the file is corrupt."
            )
        return storage.as_strided(size, stride, offset)

    def build(self, state, pos) -> None:
        target = self.top()
        if not (isinstance(target, OrderedDict) and self._dicts.get(id(target)) is target and isinstance(state, dict)):
            self.refuse("a BUILD (attribute assignment) on something other than a state_dict", pos)
        if not all(isinstance(k, str) for k in state):
            self.refuse("a BUILD with non-string attribute names", pos)
        # The state is the state_dict's ``_metadata`` (per-module version numbers),
        # which loading into an existing module does not need.
