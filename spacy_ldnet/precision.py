"""Prediction precision of ``ldnet_ner``: fp32, or int8 dynamic quantization of the LSTMs.

``precision = "int8"`` (a factory setting of the component, saved in the
pipeline's ``config.cfg``; ``spacy-ldnet quantize`` writes it) runs every
``nn.LSTM`` of the tagger at prediction time as torch's dynamically quantized
LSTM (``torch.ao.nn.quantized.dynamic.LSTM``): weights int8 with one scale
per tensor, activations quantized per call from their observed range, int8
matrix products accumulated in int32 (fbgemm on x86). The character BiLSTM,
the linear layers, the embeddings and the CRF stay fp32.

The saved weights stay fp32: the int8 copies are made from them when the
pipeline first predicts (dynamic quantization is a function of the weights),
so a quantized pipeline trains, saves and loads like any other, and
``precision = "fp32"`` gives the fp32 pipeline back exactly.

Because the activation scale of each LSTM call comes from the batch, int8
outputs can differ slightly with the batch a text is predicted in (fp32
outputs do not, up to float rounding). CPU only.

Source: Jacob et al. (2018), "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", section 2 (the affine int8
scheme); PyTorch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``).
"""
import contextlib
import copy
import warnings
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn

#: The values of the component's ``precision`` setting.
PRECISIONS = ("fp32", "int8")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises: ValueError naming the allowed values."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision = {precision!r} is not supported. Fix: set precision to one of "
            f"{', '.join(repr(p) for p in PRECISIONS)} in [components.ldnet_ner]."
        )
    return precision


def int8_lstms(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (in eval mode) whose ``nn.LSTM`` submodules are
    dynamically quantized int8 LSTMs; ``module`` itself is unchanged. LSTMs of
    a module with ``predicts_lstm_in_fp32 = True`` stay fp32 (the character
    BiLSTM, whose fp32 prediction path is faster than the int8 kernel).

    Raises: ValueError if ``module`` has parameters on a GPU (the int8 kernels
    are CPU-only)."""
    if any(p.device.type != "cpu" for p in module.parameters()):
        raise ValueError(
            "precision = 'int8' runs on CPU only, but the ldnet_ner weights are on a GPU. Fix: set "
            "precision = 'fp32' to predict on the GPU, or load the pipeline on CPU."
        )
    names = {
        f"{owner_name}.{child_name}".lstrip(".")
        for owner_name, owner in module.named_modules()
        if not getattr(owner, "predicts_lstm_in_fp32", False)
        for child_name, child in owner.named_children()
        if type(child) is nn.LSTM
    }
    with warnings.catch_warnings():
        # torch 2.x announces that eager-mode quantization moves to torchao; the
        # dynamic LSTM has no torchao counterpart yet.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module).eval(), names, dtype=torch.qint8)


class PredictionModules:
    """The torch modules a thinc model predicts with at a given precision.

    Holds int8 copies of the modules wrapped in the model's shims (built on
    first use, dropped by :meth:`invalidate` whenever the fp32 weights may have
    changed) and swaps them into the shims for the duration of
    :meth:`using`.
    """

    def __init__(self):
        self._int8: Optional[List[Tuple[object, nn.Module]]] = None

    def invalidate(self) -> None:
        """Forget the int8 copies (call after the fp32 weights change)."""
        self._int8 = None

    @contextlib.contextmanager
    def using(self, model, precision: str) -> Iterator[None]:
        """Predict with ``model``'s modules at ``precision`` inside the block."""
        if precision == "fp32":
            yield
            return
        if self._int8 is None:
            shims = [shim for node in model.walk() for shim in node.shims if isinstance(getattr(shim, "_model", None), nn.Module)]
            self._int8 = [(shim, int8_lstms(shim._model)) for shim in shims]
        originals = [(shim, shim._model) for shim, _ in self._int8]
        try:
            for shim, quantized in self._int8:
                shim._model = quantized
            yield
        finally:
            for shim, original in originals:
                shim._model = original
