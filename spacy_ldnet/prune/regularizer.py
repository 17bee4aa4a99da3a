"""LD-Net's layer-selection regulariser (Liu et al. 2018, section 3.3).

Self-contained torch (no spaCy or thinc imports).
"""
import torch


def count_nonzero_layers(masks: torch.Tensor) -> int:
    """Number of layers whose mask z_i is not exactly 0."""
    return int((masks.detach() != 0).sum().item())


def layer_selection_penalty(masks: torch.Tensor, lambda0: float = 0.05, lambda1: float = 2) -> torch.Tensor:
    """R(z) = lambda0 * sum_i z_i (1 - z_i) + lambda0 * ||z||_1 * [#{i: z_i != 0} > lambda1].

    The first term pushes every mask towards 0 or 1; the second (an L1 penalty)
    is switched on only while more than ``lambda1`` layers are still in use, so
    the number of kept layers falls to the budget and then stops falling.

    Args:
        masks: (L,) float, all layer masks z (both LMs), each in [0, 1].
        lambda0: weight of both terms (>= 0).
        lambda1: layer budget, counted across both LMs (>= 0).

    Returns:
        A 0-dim tensor (differentiable w.r.t. ``masks``).

    Raises:
        ValueError: ``masks`` is not 1-D, or a weight is negative.
    """
    if masks.dim() != 1:
        raise ValueError(f"masks must be a 1-D tensor of layer masks, got shape {tuple(masks.shape)}")
    if lambda0 < 0 or lambda1 < 0:
        raise ValueError(f"lambda0 and lambda1 must be >= 0, got {lambda0} and {lambda1}")
    binarise = (masks * (1.0 - masks)).sum()  # () pushes each z_i to 0 or 1
    over_budget = count_nonzero_layers(masks) > lambda1
    l1 = masks.abs().sum() if over_budget else masks.new_zeros(())  # () ||z||_1, only over budget
    return lambda0 * binarise + lambda0 * l1
