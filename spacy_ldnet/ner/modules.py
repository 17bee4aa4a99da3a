"""Torch head of ``ldnet_ner``: word-level BiLSTM -> emission scores, plus the CRF.

Self-contained torch (no spaCy or thinc imports). LD-Net section 4.1 /
Lample et al. (2016) section 2: a BiLSTM over the token features, a linear
layer giving emission scores per tag, and a linear-chain CRF on top.
"""
from typing import Optional

import numpy
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..torch_utils import run_lstm


from .crf import ConditionalRandomField


class BiLSTMCRFHead(nn.Module):
    """Word BiLSTM + emission layer + CRF.

    Args:
        input_dim: width of the token features (the embedding sublayer's output).
        hidden_dim: word LSTM width per direction.
        num_tags: K, size of the BILUO tag inventory.
        constraint_mask: (K+2, K+2) bool, allowed transitions incl. START/END
            (see :func:`spacy_ldnet.ner.tags.allowed_transitions`).
        dropout: dropout on the LSTM input and output.
        num_layers: stacked BiLSTM layers.
        locked_dropout: draw one dropout mask per sequence and feature, shared
            by all its time steps ("variational" dropout on the LSTM input and
            output: Gal & Ghahramani 2016; Reimers & Gurevych 2017, section
            7.3), instead of one mask per token and feature.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_tags: int,
        constraint_mask: Optional[numpy.ndarray] = None,
        dropout: float = 0.5,
        num_layers: int = 1,
        locked_dropout: bool = False,
    ):
        super().__init__()
        self.locked_dropout = locked_dropout
        self.p = dropout
        self.lstm = nn.LSTM(
            input_dim, hidden_dim, num_layers=num_layers, batch_first=True, bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.emission = nn.Linear(2 * hidden_dim, num_tags)
        self.crf = ConditionalRandomField(num_tags, constraint_mask)

    def forward(self, X: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """
        Args:
            X: (S, T, input_dim) float token features, zero-padded.
            lengths: (S,) long, tokens per sequence (>= 1), on CPU.
        Returns:
            (S, T, num_tags) emission scores; padded positions are 0.
        """
        packed = pack_padded_sequence(X, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed = PackedSequence(self._drop(packed.data, packed), packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        H = run_lstm(self.lstm, packed)  # H.data: (N_tokens, 2*hidden)
        # Emission scores on the packed rows, then pad only the (.., num_tags) result.
        E = PackedSequence(self.emission(self._drop(H.data, H)), H.batch_sizes, H.sorted_indices, H.unsorted_indices)
        E, _ = pad_packed_sequence(E, batch_first=True, total_length=X.shape[1])  # (S, T, num_tags)
        return E

    def _drop(self, data: torch.Tensor, packed: PackedSequence) -> torch.Tensor:
        """Dropout on packed rows ``data`` (N_tokens, D): per token, or with
        ``locked_dropout`` one (D,) mask per sequence shared by its tokens."""
        if not (self.locked_dropout and self.training and self.p > 0):
            return self.dropout(data)
        n_seqs = int(packed.batch_sizes[0])
        # Packed rows are time-major: time step t holds the first batch_sizes[t]
        # sequences of the length-sorted order.
        order = packed.sorted_indices
        if order is None:  # packed with enforce_sorted=True: already in order
            order = torch.arange(n_seqs, device=data.device)
        seq_of_row = torch.cat([order[: int(b)] for b in packed.batch_sizes])  # (N_tokens,)
        keep = torch.empty(n_seqs, data.shape[1], device=data.device, dtype=data.dtype).bernoulli_(1.0 - self.p)
        return data * (keep / (1.0 - self.p))[seq_of_row]  # (N_tokens, D)
