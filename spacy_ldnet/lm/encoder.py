"""Densely connected LSTM encoder of the LD-Net language model.

Sources
-------
* Liu, Ren, Shang, Gu, Peng & Han (EMNLP 2018), "Efficient Contextualized
  Representation: Language Model Pruning for Sequence Labeling" (LD-Net):
  section 3.2 (dense connectivity), 3.3 (layer selection, here only the
  ``layer_scales`` hook and :meth:`DenseLSTMEncoder.prune`), 3.4 (layer-wise
  dropout).
* Li, Kumar, Tsvetkov, et al. (TACL 2019), "Efficient Contextual Representation
  Learning With Continuous Outputs" (ELMo-C), section 3: fixed input embeddings.

Semantics
---------
* **Dense stack.** Layer ``l`` (0-based) is a single-layer unidirectional LSTM
  whose input at time ``t`` is ``[x_t; h_0,t; ...; h_{l-1},t]`` (width
  ``embed_dim + l * hidden_dim``). The encoder output is
  ``[x_t; h_0,t; ...; h_{L-1},t]`` (width ``embed_dim + L * hidden_dim``).
* **Padding.** The batch is packed once (``pack_padded_sequence(...,
  enforce_sorted=False)``) and every layer runs on the packed data, so padded
  positions never reach the LSTMs; outputs at padded positions are exactly 0.
  Rows with length 0 are allowed and give all-zero outputs.
* **Standard dropout** (``config.dropout``) is applied to the word embedding
  ``x`` and to every layer output ``h_l`` (one mask per tensor, shared by the
  output concatenation and the deeper layers' inputs).
* **Layer-wise dropout** (LD-Net section 3.4, ``config.layer_dropout = p``): in
  training mode, once per forward call (i.e. per batch) and independently per
  layer, with probability ``p`` the output of layer ``l`` is replaced by zeros
  *in the inputs of the deeper layers only*; the output concatenation always
  keeps ``h_l``. Surviving deep paths are rescaled by ``1 / (1 - p)``
  (inverted dropout) so that the expected input of a deeper layer equals its
  eval-mode input; with ``p == 1`` every deep path is zero (no rescaling).
  The embedding ``x`` is never layer-dropped. Off in eval mode.
* **Layer scales** (LD-Net section 3.3): ``layer_scales[l]`` multiplies ``h_l``
  both in the output concatenation and in every deeper layer's input; it is
  differentiable. A layer whose scale is exactly 0 can be removed with
  :meth:`DenseLSTMEncoder.prune` without changing any other column.
* **Direction.** The encoder always reads left to right. A *backward* LM is
  the same model trained on sentences reversed *by the data pipeline*
  (:mod:`spacy_ldnet.lm.training.batches` reverses each sentence's words
  before adding the boundary tokens and building next-token targets).
  :func:`reverse_padded` is the same reversal applied to a padded batch; to
  get backward features aligned with the original token order use
  :meth:`DenseLSTMEncoder.encode_text_order`, which reverses the input rows,
  encodes, and reverses the output rows back.
* **Words outside the vocabulary** (``extra_inputs``): an LM whose input
  embeddings are a fixed pretrained table (``freeze_input``, the ELMo-C
  setting) can read any word of that table, not only its ``vocab_size`` rows.
  An id ``vocab_size + k`` reads row ``j`` of ``extra_inputs = (keys,
  vectors)`` where ``keys[j] == k``; callers give each such word its row of
  the full pretrained table as ``k``, so equal words get equal ids.
* **Initialisation.** PyTorch defaults (LSTM weights ~ U(-1/sqrt(h), 1/sqrt(h)),
  embedding ~ N(0, 1)), except that the forget-gate bias of every LSTM starts
  at 1 (``bias_ih`` forget slice = 1, ``bias_hh`` forget slice = 0).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..torch_utils import backward_on_cpu, padded_lstm
from .config import LMConfig

#: ``(keys, vectors)``: (U,) int64 keys in ascending order and their (U, E)
#: input embeddings, read by ids ``vocab_size + key`` (see the module docstring).
ExtraInputs = Tuple[Tensor, Tensor]


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of a padded batch within its length.

    x: (B, T, ...) any dtype; lengths: (B,) ints in [0, T]. Position ``t <
    lengths[b]`` of row ``b`` receives ``x[b, lengths[b] - 1 - t]``; padding
    positions keep their values. The function is its own inverse.

    This is the backward-LM reversal on padded batches (the data pipeline
    reverses sentences before padding, which is the same thing);
    :meth:`DenseLSTMEncoder.encode_text_order` applies it to inputs and
    outputs.

    Raises:
        ValueError: shapes disagree or a length is outside [0, T].
    """
    if x.dim() < 2:
        raise ValueError(f"reverse_padded expects (B, T, ...), got shape {tuple(x.shape)}")
    B, T = x.shape[0], x.shape[1]
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must be in [0, {T}], got {lengths.tolist()}")
    t = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
    idx = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


def dense_output_columns(keep: Sequence[int], embed_dim: int, hidden_dim: int) -> Tensor:
    """Column indices of the full dense output that survive :meth:`DenseLSTMEncoder.prune`.

    Returns a LongTensor of length ``embed_dim + len(keep) * hidden_dim``:
    the embedding columns, then the ``hidden_dim`` columns of each kept layer
    in increasing layer order. ``full_output[..., cols]`` equals the pruned
    encoder's output when the dropped layers' scales are 0.
    """
    cols = [torch.arange(embed_dim)]
    for layer in keep:
        start = embed_dim + int(layer) * hidden_dim
        cols.append(torch.arange(start, start + hidden_dim))
    return torch.cat(cols)


def _check_batch(token_ids: Tensor, lengths: Tensor) -> Tensor:
    if token_ids.dim() != 2:
        raise ValueError(f"token_ids must have shape (B, T), got {tuple(token_ids.shape)}")
    if token_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise ValueError(f"token_ids must be an integer tensor, got {token_ids.dtype}")
    B, T = token_ids.shape
    lengths = torch.as_tensor(lengths).long().cpu()
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must be in [0, T={T}], got {lengths.tolist()}")
    return lengths


class DenseLSTMEncoder(nn.Module):
    """Densely connected stack of L single-layer LSTMs (LD-Net section 3.2).

    Holds the input word embedding and the LSTM layers. See the module
    docstring for dropout, layer-wise dropout and padding semantics.

    Attributes:
        config: the :class:`LMConfig` (a copy; ``num_layers`` matches the
            layers actually present, also after :meth:`prune`).
        embedding: ``nn.Embedding(vocab_size, embed_dim)``.
        layers: ``nn.ModuleList`` of ``nn.LSTM``; layer ``l`` has
            ``input_size == embed_dim + l * hidden_dim``.
        output_dim: ``embed_dim + num_layers * hidden_dim``.
    """

    def __init__(self, config: LMConfig):
        super().__init__()
        config.validate()
        self.config = LMConfig.from_dict(config.to_dict())
        self.embed_dim = config.embed_dim
        self.hidden_dim = config.hidden_dim
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.embedding.weight.requires_grad_(not config.freeze_input)
        self.layers = nn.ModuleList(
            nn.LSTM(config.embed_dim + i * config.hidden_dim, config.hidden_dim, batch_first=True)
            for i in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layer_dropout = float(config.layer_dropout)
        h = config.hidden_dim
        with torch.no_grad():
            for lstm in self.layers:
                lstm.bias_ih_l0[h : 2 * h].fill_(1.0)
                lstm.bias_hh_l0[h : 2 * h].fill_(0.0)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def output_dim(self) -> int:
        return self.embed_dim + self.num_layers * self.hidden_dim

    def layer_input_sizes(self) -> List[int]:
        """``input_size`` of every LSTM layer (``embed_dim + l * hidden_dim``)."""
        return [lstm.input_size for lstm in self.layers]

    # -- forward -------------------------------------------------------------
    def embed(self, token_ids: Tensor, extra_inputs: Optional[ExtraInputs] = None) -> Tensor:
        """Input embeddings x of ``token_ids`` (any shape) -> (..., embed_dim).

        Ids in ``[0, vocab_size)`` read ``embedding``; an id ``vocab_size + k``
        reads the row of ``extra_inputs`` whose key is ``k`` (module docstring).

        Raises:
            ValueError: an id >= vocab_size without ``extra_inputs``, or one
                whose key is not among ``extra_inputs``' keys.
        """
        V = self.embedding.num_embeddings
        if extra_inputs is None:
            if token_ids.numel() and int(token_ids.max()) >= V:
                raise ValueError(
                    f"token id {int(token_ids.max())} is outside the LM vocabulary ({V} rows) and no "
                    f"extra_inputs were given for it"
                )
            return self.embedding(token_ids)
        keys, vectors = extra_inputs  # (U,), (U, E)
        outside = token_ids >= V  # (...)
        if not bool(outside.any()):
            return self.embedding(token_ids)
        k = token_ids[outside] - V  # (M,) keys of the words outside the vocabulary
        j = torch.searchsorted(keys, k).clamp_(max=max(keys.shape[0] - 1, 0))  # (M,)
        if keys.shape[0] == 0 or not bool((keys[j] == k).all()):
            raise ValueError("extra_inputs lack the key of an id >= vocab_size")
        x = self.embedding(token_ids.clamp(max=V - 1))  # (..., E)
        return x.index_put((outside,), vectors[j].to(x.dtype))  # (..., E)

    def _layer_keep(self, device: torch.device) -> Optional[Tensor]:
        """Per-layer multipliers of the deep path, or None (no layer dropout)."""
        p = self.layer_dropout
        if not self.training or p <= 0.0 or self.num_layers < 2:
            return None
        if p >= 1.0:
            return torch.zeros(self.num_layers, device=device)
        keep = (torch.rand(self.num_layers) >= p).float() / (1.0 - p)
        return keep.to(device)

    def forward_packed(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> PackedSequence:
        """Encode and return a ``PackedSequence`` of dense outputs.

        Same arguments as :meth:`forward`; every row must have length >= 1.
        ``result.data`` has shape (sum(lengths), output_dim).
        """
        lengths = _check_batch(token_ids, lengths)
        if layer_scales is not None and tuple(layer_scales.shape) != (self.num_layers,):
            raise ValueError(
                f"layer_scales must have shape ({self.num_layers},), got {tuple(layer_scales.shape)}"
            )
        # Pack the ids, not the embeddings: no padded (B, T, E) tensor is built.
        ids = pack_padded_sequence(token_ids, lengths, batch_first=True, enforce_sorted=False)
        x = self.dropout(self.embed(ids.data, extra_inputs))  # (N, E), time-major packed order
        packed = ids._replace(data=x)
        if not self.training and not torch.is_grad_enabled():
            return packed._replace(data=self._dense_inference(packed, layer_scales))
        keep = self._layer_keep(x.device)
        outputs = [x]  # the output concatenation [x; h_0; ...]
        deep = [x]  # the inputs of the next layer [x; h_0 * m_0; ...]
        for i, lstm in enumerate(self.layers):
            inp = deep[0] if len(deep) == 1 else torch.cat(deep, dim=-1)
            layer_in = packed._replace(data=inp)
            # padded_lstm: the CPU kernel's backward over packed input is quadratic in T
            h = padded_lstm(lstm, layer_in) if backward_on_cpu(lstm, layer_in) else lstm(layer_in)[0].data
            h = self.dropout(h)
            if layer_scales is not None:
                h = h * layer_scales[i].to(h.dtype)
            outputs.append(h)
            if i + 1 < self.num_layers:
                deep.append(h if keep is None else h * keep[i])
        data = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        return packed._replace(data=data)

    def _dense_inference(self, packed: PackedSequence, layer_scales: Optional[Tensor]) -> Tensor:
        """The dense outputs of the packed embeddings ``packed.data`` (N, E) in
        eval mode without a graph: every layer writes its (N, H) output into one
        (N, output_dim) buffer and reads the buffer's leading columns, its
        input ``[x; h_0; ...; h_{l-1}]``, in place (no concatenation)."""
        x = packed.data  # (N, E)
        out = x.new_empty((x.shape[0], self.output_dim))  # (N, E + L * H)
        out[:, : self.embed_dim] = x
        for i, lstm in enumerate(self.layers):
            width = lstm.input_size  # E + i * H
            h = lstm(packed._replace(data=out[:, :width]))[0].data  # (N, H)
            if layer_scales is not None:
                h = h * layer_scales[i].to(h.dtype)
            out[:, width : width + self.hidden_dim] = h
        return out

    def forward(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> Tensor:
        """Dense contextual representations.

        Args:
            token_ids: (B, T) int64 ids in ``[0, vocab_size)``, or ``vocab_size +
                key`` for a word of ``extra_inputs``.
            lengths: (B,) ints in ``[0, T]``; positions ``t >= lengths[b]`` are
                padding and never influence real positions.
            layer_scales: optional (L,) float tensor; ``h_l`` is multiplied by
                ``layer_scales[l]`` in the output and in deeper layers' inputs
                (LD-Net section 3.3). Gradients flow to it.
            extra_inputs: optional :data:`ExtraInputs`, the input embeddings of
                the ids >= vocab_size (:meth:`embed`).

        Returns:
            (B, T, embed_dim + L * hidden_dim) float tensor,
            ``[x_t; h_0,t; ...; h_{L-1},t]``; exactly 0 at padding positions.

        Raises:
            ValueError: bad shapes, dtypes or lengths, or an id >= vocab_size
                that ``extra_inputs`` lack.
        """
        lengths = _check_batch(token_ids, lengths)
        B, T = token_ids.shape
        nonempty = lengths > 0
        if bool(nonempty.all()):
            packed = self.forward_packed(token_ids, lengths, layer_scales=layer_scales, extra_inputs=extra_inputs)
            out, _ = pad_packed_sequence(packed, batch_first=True, total_length=T)
            return out
        out = self.embedding.weight.new_zeros(B, T, self.output_dim)
        if bool(nonempty.any()):
            rows = nonempty.nonzero().squeeze(1)
            sub = self.forward(
                token_ids[rows.to(token_ids.device)], lengths[rows], layer_scales=layer_scales, extra_inputs=extra_inputs
            )
            out = out.index_copy(0, rows.to(out.device), sub)
        return out

    def encode_text_order(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        extra_inputs: Optional[ExtraInputs] = None,
    ) -> Tensor:
        """Encode in the LM's direction, returning outputs aligned with the input order.

        For ``config.direction == "forward"`` this is :meth:`forward`. For
        ``"backward"`` the rows are reversed with :func:`reverse_padded`, encoded, and the
        outputs reversed back, so position ``t`` of the result summarises
        tokens ``t .. len-1`` of the original row.
        """
        if self.config.direction == "forward":
            return self.forward(token_ids, lengths, layer_scales=layer_scales, extra_inputs=extra_inputs)
        lengths_t = torch.as_tensor(lengths).long()
        rev = reverse_padded(token_ids, lengths_t.to(token_ids.device))
        out = self.forward(rev, lengths_t, layer_scales=layer_scales, extra_inputs=extra_inputs)
        return reverse_padded(out, lengths_t.to(out.device))

    # -- pruning ------------------------------------------------------------
    def output_columns(self, keep: Sequence[int]) -> Tensor:
        """Columns of this encoder's output kept by ``prune(keep)``; see :func:`dense_output_columns`."""
        return dense_output_columns(self._check_keep(keep), self.embed_dim, self.hidden_dim)

    def _check_keep(self, keep: Sequence[int]) -> List[int]:
        keep = [int(k) for k in keep]
        if keep != sorted(set(keep)) or any(k < 0 or k >= self.num_layers for k in keep):
            raise ValueError(
                f"keep must be strictly increasing layer indices in [0, {self.num_layers}), got {keep}"
            )
        return keep

    def prune(self, keep: Sequence[int]) -> "DenseLSTMEncoder":
        """Return a new encoder with only the layers ``keep`` (LD-Net section 3.3).

        The embedding is copied; kept layer ``keep[j]`` keeps its recurrent
        weights and biases, and of its input-to-hidden weight only the columns
        that read ``x`` and the kept earlier layers. Equivalent to the full
        encoder run with ``layer_scales`` 0 for the dropped layers, restricted
        to :meth:`output_columns` (kept layers' scales, if any, must then be
        passed as ``layer_scales[keep]``).

        Raises:
            ValueError: ``keep`` is not strictly increasing or out of range.
        """
        keep = self._check_keep(keep)
        new = DenseLSTMEncoder(self.config.replace(num_layers=len(keep)))
        new.train(self.training)
        E, H = self.embed_dim, self.hidden_dim
        with torch.no_grad():
            new.embedding.weight.copy_(self.embedding.weight)
            new.embedding.weight.requires_grad_(self.embedding.weight.requires_grad)
            for j, layer in enumerate(keep):
                src, dst = self.layers[layer], new.layers[j]
                cols = dense_output_columns(keep[:j], E, H).to(src.weight_ih_l0.device)
                dst.weight_ih_l0.copy_(src.weight_ih_l0[:, cols])
                dst.weight_hh_l0.copy_(src.weight_hh_l0)
                dst.bias_ih_l0.copy_(src.bias_ih_l0)
                dst.bias_hh_l0.copy_(src.bias_hh_l0)
        return new.to(self.embedding.weight.device)

    # -- cost ---------------------------------------------------------------------
    def multiply_adds_per_token(self) -> int:
        """Multiply-adds of one token through the LSTM stack (inference).

        Counts only the gate matrix products: ``4 * h * (in_l + h)`` per layer
        (input-to-hidden and hidden-to-hidden). Not counted: the embedding
        lookup (no arithmetic), bias additions, gate non-linearities and the
        element-wise cell update (O(h) per layer, under 1% here), and
        concatenation/dropout (data movement).
        """
        h = self.hidden_dim
        return sum(4 * h * (lstm.input_size + h) for lstm in self.layers)
