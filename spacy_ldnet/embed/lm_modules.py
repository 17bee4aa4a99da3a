"""Torch modules of LD-Net's contextual LM features (sections 3.3 and 4.1).

Self-contained torch: no spaCy or thinc imports. The thinc wrapper is
:mod:`spacy_ldnet.embed.lm_embedder`.

Shapes: S sequences, T tokens (padded), L_f / L_b layers of the forward /
backward LM, D_f / D_b their dense output widths (``embed_dim + L * hidden_dim``).
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..lm.encoder import ExtraInputs, reverse_padded
from ..lm.model import DenseLSTMEncoder, LMConfig
from ..torch_utils import packed_rows
from .modules import CharWordEmbedder


def encoder_config(*, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, direction: str) -> LMConfig:
    """The :class:`LMConfig` of a frozen feature-extracting LM encoder (no dropout)."""
    return LMConfig(
        vocab_size=vocab_size,
        embed_dim=embed_dim,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        dropout=0.0,
        layer_dropout=0.0,
        output="vmf",
        target_dim=embed_dim,
        freeze_input=True,
        direction=direction,
    )


class LMFeatures(nn.Module):
    """Frozen forward + backward dense LMs -> r_t = ReLU(W [h_t; h_t^r] + b).

    LD-Net section 4.1 (contextual representation) with the layer-selection
    masks of section 3.3: one scalar z_i per LM layer (``forward_masks``,
    ``backward_masks``, initialised to 1) scales layer i's output both in the
    dense output ``[x_t; z_1 h_1,t; ...; z_L h_L,t]`` and in the input of every
    deeper layer, so a layer with z_i = 0 can be deleted exactly
    (:meth:`prune_layers`).

    The LM weights are frozen (``requires_grad=False``) and the encoders always
    run in eval mode (no LM dropout). Whether the masks learn (layer selection,
    :mod:`spacy_ldnet.prune`) is the masks' own ``requires_grad`` and nothing
    else: :meth:`set_learn_masks` switches it, :attr:`learn_masks` reads it.
    While the masks are fixed, the LMs run under ``torch.no_grad()``.

    Args:
        forward_config / backward_config: :class:`LMConfig` of the two encoders
            (``direction`` must be ``"forward"`` / ``"backward"``).
        out_dim: width of r_t (LD-Net: 100 for NER).
        dropout: dropout on [h_t; h_t^r] before W.
        cache_tokens: in training mode with fixed masks, keep the dense LM
            outputs of up to this many tokens in memory, keyed by the
            sentence's LM ids, so later epochs skip the frozen LMs (exact: the
            LMs are deterministic in eval mode). Costs ``4 * (D_f + D_b)`` bytes
            per token (10.6 kB for two 10x128 LMs). 0 disables the cache.
    """

    def __init__(
        self,
        forward_config: LMConfig,
        backward_config: LMConfig,
        out_dim: int,
        dropout: float = 0.5,
        cache_tokens: int = 0,
    ):
        super().__init__()
        if forward_config.direction != "forward" or backward_config.direction != "backward":
            raise ValueError(
                "LMFeatures needs a forward and a backward LM config, got directions "
                f"{forward_config.direction!r} and {backward_config.direction!r}"
            )
        self.forward_lm = DenseLSTMEncoder(forward_config)
        self.backward_lm = DenseLSTMEncoder(backward_config)
        for p in list(self.forward_lm.parameters()) + list(self.backward_lm.parameters()):
            p.requires_grad_(False)
        self.forward_masks = nn.Parameter(torch.ones(self.forward_lm.num_layers))
        self.backward_masks = nn.Parameter(torch.ones(self.backward_lm.num_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.forward_lm.output_dim + self.backward_lm.output_dim, out_dim)
        self.out_dim = out_dim
        self.cache_tokens = int(cache_tokens)
        self._cache: Dict[bytes, torch.Tensor] = {}
        self._cached_tokens = 0
        self.set_learn_masks(False)
        self.forward_lm.eval()
        self.backward_lm.eval()

    def train(self, mode: bool = True) -> "LMFeatures":
        super().train(mode)
        self.forward_lm.eval()  # frozen feature extractors: never LM dropout
        self.backward_lm.eval()
        return self

    @property
    def learn_masks(self) -> bool:
        """True while the masks z receive gradients (layer selection, LD-Net section 3.3)."""
        return bool(self.forward_masks.requires_grad)

    def set_learn_masks(self, learn: bool) -> None:
        """Let the masks z receive gradients (True) or keep them fixed (False)."""
        self.clear_cache()  # cached outputs were computed with the masks of that time
        self.forward_masks.requires_grad_(bool(learn))
        self.backward_masks.requires_grad_(bool(learn))

    def clear_cache(self) -> None:
        """Drop the cached dense LM outputs (see ``cache_tokens``)."""
        self._cache = {}
        self._cached_tokens = 0

    def clamp_layer_masks(self) -> None:
        """Clamp every z_i to [0, 1] (call after each optimizer step)."""
        with torch.no_grad():
            self.forward_masks.clamp_(0.0, 1.0)
            self.backward_masks.clamp_(0.0, 1.0)

    def layer_masks(self) -> torch.Tensor:
        """(L_f + L_b,) the masks, forward layers first."""
        return torch.cat([self.forward_masks, self.backward_masks])

    def dense_outputs(
        self,
        fw_ids: torch.Tensor,
        bw_ids: torch.Tensor,
        lengths: torch.Tensor,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> torch.Tensor:
        """[h_t; h_t^r] for every word (LD-Net section 4.1).

        Args:
            fw_ids: (S, T+1) long, ``<s> w_1 .. w_n`` then padding (forward-LM ids).
            bw_ids: (S, T+1) long, ``w_1 .. w_n <s>`` then padding (backward-LM ids,
                text order; the encoder reads it right to left).
            lengths: (S,) long, n per sequence (>= 1), on CPU.
            extra_inputs: the input embeddings of ids >= the LMs' vocabulary
                size (words outside it), shared by both LMs; see
                :meth:`spacy_ldnet.lm.encoder.DenseLSTMEncoder.embed`.
        Returns:
            (S, T, D_f + D_b) float; rows at padded positions are arbitrary.
        """
        if self.cache_tokens > 0 and self.training and not self.learn_masks:
            return self._cached_dense_outputs(fw_ids, bw_ids, lengths, extra_inputs)
        return self._dense_outputs(fw_ids, bw_ids, lengths, extra_inputs)

    def _dense_outputs(
        self,
        fw_ids: torch.Tensor,
        bw_ids: torch.Tensor,
        lengths: torch.Tensor,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> torch.Tensor:
        n1 = lengths.cpu() + 1  # (S,) the boundary token is part of each row
        learn = self.learn_masks
        with torch.set_grad_enabled(torch.is_grad_enabled() and learn):
            zf = self.forward_masks if learn else self.forward_masks.detach()
            zb = self.backward_masks if learn else self.backward_masks.detach()
            hf = self.forward_lm(fw_ids, n1, layer_scales=zf, extra_inputs=extra_inputs)  # (S, T+1, D_f); position t+1 has read <s> w_1..w_t+1
            hb = self.backward_lm.encode_text_order(bw_ids, n1, layer_scales=zb, extra_inputs=extra_inputs)  # (S, T+1, D_b); position t has read w_n..w_t
        return torch.cat([hf[:, 1:], hb[:, :-1]], dim=-1)  # (S, T, D_f + D_b)

    @torch.no_grad()
    def _cached_dense_outputs(
        self,
        fw_ids: torch.Tensor,
        bw_ids: torch.Tensor,
        lengths: torch.Tensor,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> torch.Tensor:
        """:meth:`_dense_outputs` through the cache, keyed by each sequence's LM ids
        (a word outside the LM vocabulary has its own id, see ``extra_inputs``)."""
        n = [int(x) for x in lengths.tolist()]
        S, T = fw_ids.shape[0], fw_ids.shape[1] - 1
        fw_np, bw_np = fw_ids.cpu().numpy(), bw_ids.cpu().numpy()
        keys = [fw_np[s, : n[s] + 1].tobytes() + bw_np[s, : n[s] + 1].tobytes() for s in range(S)]
        rows: Dict[int, torch.Tensor] = {s: self._cache[k] for s, k in enumerate(keys) if k in self._cache}
        missing = [s for s in range(S) if s not in rows]
        if missing:
            idx = torch.as_tensor(missing, dtype=torch.long)
            T_m = max(n[s] for s in missing)
            sub = self._dense_outputs(
                fw_ids[idx.to(fw_ids.device), : T_m + 1],
                bw_ids[idx.to(bw_ids.device), : T_m + 1],
                lengths.cpu()[idx],
                extra_inputs,
            )  # (M, T_m, D)
            for j, s in enumerate(missing):
                row = sub[j, : n[s]].clone()  # (n_s, D)
                rows[s] = row
                if self._cached_tokens + n[s] <= self.cache_tokens:
                    self._cache[keys[s]] = row
                    self._cached_tokens += n[s]
        D = next(iter(rows.values())).shape[-1]
        out = fw_ids.new_zeros((S, T, D), dtype=torch.float32)  # (S, T, D_f + D_b)
        for s in range(S):
            out[s, : n[s]] = rows[s]
        return out

    def forward(
        self,
        fw_ids: torch.Tensor,
        bw_ids: torch.Tensor,
        lengths: torch.Tensor,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> torch.Tensor:
        """r_t = ReLU(W dropout([h_t; h_t^r]) + b), shape (S, T, out_dim); arguments as
        :meth:`dense_outputs`; rows at padded positions are arbitrary.

        Through the cache (see ``cache_tokens``) the dense outputs are padded
        (S, T, D_f + D_b) rows; otherwise both LMs stay packed and W is split
        by columns, ``W [h_t; h_t^r] = W_f h_t + W_b h_t^r``, so the LM outputs
        are never padded, reversed or joined.
        """
        if self.cache_tokens > 0 and self.training and not self.learn_masks:
            h = self._cached_dense_outputs(fw_ids, bw_ids, lengths, extra_inputs)  # (S, T, D_f + D_b)
            return torch.relu(self.proj(self.dropout(h)))  # (S, T, out_dim)
        S, T = fw_ids.shape[0], fw_ids.shape[1] - 1
        n = lengths.cpu().unsqueeze(1)  # (S, 1) tokens per sequence
        n1 = n.squeeze(1) + 1  # (S,) the boundary token is part of each row
        learn = self.learn_masks
        with torch.set_grad_enabled(torch.is_grad_enabled() and learn):
            zf = self.forward_masks if learn else self.forward_masks.detach()
            zb = self.backward_masks if learn else self.backward_masks.detach()
            # Forward LM over <s> w_1 .. w_n: step p has read <s> w_1..w_p.
            hf = self.forward_lm.forward_packed(fw_ids, n1, layer_scales=zf, extra_inputs=extra_inputs)  # .data (N1, D_f)
            # Backward LM over <s> w_n .. w_1 (bw_ids reversed within n + 1): step p has read w_n..w_{n+1-p}.
            hb = self.backward_lm.forward_packed(
                reverse_padded(bw_ids, n1.to(bw_ids.device)), n1, layer_scales=zb, extra_inputs=extra_inputs
            )  # .data (N1, D_b)
        D_f = self.forward_lm.output_dim
        yf = nn.functional.linear(self.dropout(hf.data), self.proj.weight[:, :D_f])  # (N1, out_dim)
        yb = nn.functional.linear(self.dropout(hb.data), self.proj.weight[:, D_f:], self.proj.bias)  # (N1, out_dim)
        t = torch.arange(T).unsqueeze(0)  # (1, T)
        real = t < n  # (S, T)
        step_f = torch.where(real, t + 1, 0)  # (S, T) token t (0-based) is w_{t+1}
        step_b = torch.where(real, n - t, 0)  # (S, T) the backward step that has read w_n..w_{t+1}
        rows_f, rows_b = packed_rows(hf, step_f).view(-1), packed_rows(hb, step_b).view(-1)  # (S * T,)
        r = yf.index_select(0, rows_f).add_(yb.index_select(0, rows_b))  # (S * T, out_dim)
        return torch.relu_(r).view(S, T, -1)  # (S, T, out_dim)

    def multiply_adds_per_token(self) -> Dict[str, int]:
        """Multiply-adds per token: both LSTM stacks (``lm``) and W (``projection``)."""
        lm = self.forward_lm.multiply_adds_per_token() + self.backward_lm.multiply_adds_per_token()
        return {"lm": lm, "projection": self.proj.in_features * self.proj.out_features}

    @torch.no_grad()
    def prune_layers(self, keep_forward: Sequence[int], keep_backward: Sequence[int]) -> "LMFeatures":
        """A new module with only the given layers (LD-Net section 3.3), exactly
        equal to this one when the masks of all other layers are 0.

        Deletes the dropped layers, slices the input weights of deeper kept
        layers (:meth:`DenseLSTMEncoder.prune`) and the columns of W, and keeps
        the kept layers' masks.

        Raises:
            ValueError: layer indices not strictly increasing or out of range.
        """
        fw = self.forward_lm.prune(keep_forward)
        bw = self.backward_lm.prune(keep_backward)
        new = LMFeatures(fw.config, bw.config, self.out_dim, self.dropout.p, self.cache_tokens)
        new.forward_lm.load_state_dict(fw.state_dict())
        new.backward_lm.load_state_dict(bw.state_dict())
        kf = torch.as_tensor(list(keep_forward), dtype=torch.long)
        kb = torch.as_tensor(list(keep_backward), dtype=torch.long)
        new.forward_masks.copy_(self.forward_masks[kf])
        new.backward_masks.copy_(self.backward_masks[kb])
        cols = torch.cat(
            [
                self.forward_lm.output_columns(keep_forward),
                self.forward_lm.output_dim + self.backward_lm.output_columns(keep_backward),
            ]
        )
        new.proj.weight.copy_(self.proj.weight[:, cols])
        new.proj.bias.copy_(self.proj.bias)
        new.set_learn_masks(self.learn_masks)
        new.train(self.training)
        return new.to(self.proj.weight.device)


class LDNetEmbedder(nn.Module):
    """[word embedding; character BiLSTM feature; r_t] per token (LD-Net section 4.1).

    Output width ``word_dim + char_out_dim + case_dim + lm.out_dim``.
    """

    def __init__(self, char_word: CharWordEmbedder, lm: LMFeatures):
        super().__init__()
        self.char_word = char_word
        self.lm = lm

    def clear_cache(self) -> None:
        """Drop the LM features' cached dense outputs (see :class:`LMFeatures` ``cache_tokens``)."""
        self.lm.clear_cache()

    def clamp_layer_masks(self) -> None:
        """Clamp the LM layer masks to [0, 1] (see :meth:`LMFeatures.clamp_layer_masks`)."""
        self.lm.clamp_layer_masks()

    def forward(
        self,
        lm_fw_ids: torch.Tensor,
        lm_bw_ids: torch.Tensor,
        lengths: torch.Tensor,
        *char_word_inputs: torch.Tensor,
        case_ids: Optional[torch.Tensor] = None,
        lm_extra_inputs: Optional[ExtraInputs] = None,
    ) -> torch.Tensor:
        """
        Args:
            lm_fw_ids, lm_bw_ids, lengths, lm_extra_inputs: as
                :meth:`LMFeatures.dense_outputs` (``extra_inputs``).
            char_word_inputs, case_ids: the inputs of :class:`CharWordEmbedder`
                (word rows, frozen vectors, char ids, char lengths, fw/bw index).
        Returns:
            (S, T, word_dim + char_out_dim + case_dim + lm.out_dim) float.
        """
        cw = self.char_word(*char_word_inputs, case_ids=case_ids)  # (S, T, Dw + Dc + Dcase)
        r = self.lm(lm_fw_ids, lm_bw_ids, lengths, lm_extra_inputs)  # (S, T, out_dim)
        return torch.cat([cw, r[:, : cw.shape[1]]], dim=-1)


def kept_layers(masks: torch.Tensor) -> List[int]:
    """Indices of the layers whose mask is non-zero."""
    return [int(i) for i in torch.nonzero(masks.detach() != 0).flatten().tolist()]
