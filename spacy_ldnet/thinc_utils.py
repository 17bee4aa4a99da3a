"""Thinc <-> torch glue shared by the embedder and the tagger."""
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats3d


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
