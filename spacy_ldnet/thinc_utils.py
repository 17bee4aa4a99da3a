"""Thinc <-> torch glue shared by the embedder and the tagger."""
import contextlib
from typing import Dict, Iterator

import numpy
import torch
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v3, torch2xp, xp2torch
from thinc.types import Floats3d

from .weights import deserialize_module, serialize_module


def to_host(array) -> numpy.ndarray:
    """``array`` as a numpy array on the host, copying a cupy array (``.get()``) off the GPU.

    With ``spacy train --gpu-id N`` thinc keeps the vectors table, ``Vectors.find``
    results and model outputs on the GPU as cupy arrays, which ``numpy.asarray``
    refuses to convert implicitly. A numpy array is returned as it is."""
    return numpy.asarray(array.get() if hasattr(array, "get") else array)


def wrap_torch(module: torch.nn.Module, *, convert_inputs, convert_outputs, mixed_precision: bool = False) -> Model:
    """Wrap a torch module as a thinc layer (``PyTorchWrapper_v3``).

    Every torch module of the package is wrapped here, so they all share one
    way of saving and loading their weights: the module's ``state_dict`` as
    safetensors bytes (:func:`spacy_ldnet.weights.serialize_module`), never a
    pickle. Loading also reads the ``torch.save`` archives of pipelines saved
    by earlier versions, without unpickling them
    (:func:`spacy_ldnet.weights.deserialize_module`); it raises
    :class:`spacy_ldnet.weights.WeightsError` (a ``ValueError``) for weights
    that are corrupt, do not match the module, or could run code."""
    return PyTorchWrapper_v3(
        module,
        convert_inputs=convert_inputs,
        convert_outputs=convert_outputs,
        mixed_precision=mixed_precision,
        serialize_model=serialize_module,
        deserialize_model=deserialize_module,
    )


def torch_module(layer: Model) -> torch.nn.Module:
    """The torch module wrapped by ``layer`` (a :func:`wrap_torch` layer).

    Raises: ValueError if ``layer`` wraps no torch module."""
    if not layer.shims:
        raise ValueError(f"Layer {layer.name!r} wraps no torch module.")
    return layer.shims[0]._model


def convert_padded_outputs(model: Model, inputs_outputs, is_train: bool):
    """``PyTorchWrapper_v2`` output converter for one padded (S, T, D) tensor.

    Returns the float32 thinc array and a callback turning its gradient into
    the ``torch.autograd.backward`` arguments (cast back to the output's dtype,
    which differs under mixed precision).
    """
    _, Ytorch = inputs_outputs
    Y = torch2xp(Ytorch.float())

    def convert_for_torch_backward(dY: Floats3d) -> ArgsKwargs:
        dYtorch = xp2torch(dY, device=model.shims[0].device).to(Ytorch.dtype)
        return ArgsKwargs(args=(Ytorch,), kwargs={"grad_tensors": dYtorch})

    return Y, convert_for_torch_backward


@contextlib.contextmanager
def use_torch_params(model: Model, params: Dict) -> Iterator[None]:
    """Temporarily load ``params`` (e.g. ``optimizer.averages``) into every
    torch module wrapped inside ``model``, and restore the live weights after.

    thinc's optimizer keys a wrapped torch parameter as ``(shim.id, name)``
    (``PyTorchShim.finish_update``), but ``PyTorchShim.use_params`` only reads
    keys of the form ``"pytorch_{id}_{name}"`` (thinc 8.x), so with
    ``[training.optimizer] use_averages = true`` spaCy would evaluate and save
    the live weights instead of the averages. This reads the optimizer's keys.
    Parameters without an entry (frozen ones, e.g. the LMs) are left as they are.

    Raises: ValueError if an entry's shape differs from the parameter's.
    """
    from thinc.shims import PyTorchShim

    swapped = []  # (parameter, live copy)
    try:
        with torch.no_grad():
            for node in model.walk():
                for shim in node.shims:
                    if not isinstance(shim, PyTorchShim):
                        continue
                    for name, param in shim._model.named_parameters():
                        value = params.get((shim.id, name)) if params else None
                        if value is None:
                            continue
                        if tuple(value.shape) != tuple(param.shape):
                            raise ValueError(
                                f"Averaged parameter {name!r} has shape {tuple(value.shape)}, the model's has "
                                f"{tuple(param.shape)}. Fix: pass the averages of this model's own optimizer."
                            )
                        swapped.append((param, param.detach().clone()))
                        param.copy_(xp2torch(value).to(device=param.device, dtype=param.dtype))
        yield
    finally:
        with torch.no_grad():
            for param, live in swapped:
                param.copy_(live)
