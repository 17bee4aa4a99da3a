"""Torch modules of the non-LM word features of LD-Net (section 4.1).

Self-contained torch: no spaCy or thinc imports. The thinc wrapper that turns
``Doc`` objects into the integer inputs below is :mod:`spacy_ldnet.embed.embedder`.

Shapes: S sequences, T tokens (padded), C characters (padded).
"""
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..torch_utils import lstm_over_padded, packed_rows, run_lstm

#: Sequences per length-sorted padded group when the character BiLSTM predicts
#: on a CPU (see :meth:`CharBiLSTM._predict_in_groups`).
PREDICTION_BUCKET_SIZE = 16


class CharBiLSTM(nn.Module):
    """Character-level BiLSTM over a whole sentence (LD-Net section 4.1).

    The sentence is read as one character stream with a space after every word:
    ``w_1 ␣ w_2 ␣ ... w_n ␣``. The word's feature is the forward state at the
    space after word t (it has read w_1..w_t) joined with the backward state at
    word t's first character (it has read w_t..w_n), projected to ``out_dim``.
    Sequences are packed, so padding never reaches a real position.

    Args:
        n_chars: rows of the character embedding table (id 0 is padding).
        char_dim: character embedding width.
        hidden_dim: LSTM width per direction.
        out_dim: width of the projected word feature.
        dropout: dropout on the character embeddings.
    """

    #: precision = "int8" leaves this LSTM in fp32: its grouped oneDNN
    #: prediction (:meth:`_predict_in_groups`) is faster than the int8 kernel.
    predicts_lstm_in_fp32 = True

    def __init__(self, n_chars: int, char_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dim = hidden_dim
        self.bucket_size = PREDICTION_BUCKET_SIZE

    def forward(
        self,
        char_ids: torch.Tensor,
        char_lengths: torch.Tensor,
        fw_index: torch.Tensor,
        bw_index: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            char_ids: (S, C) long, 0-padded character ids.
            char_lengths: (S,) long, characters per sequence (>= 1), on CPU.
            fw_index: (S, T) long, index of the space after word t (0 at padding).
            bw_index: (S, T) long, index of word t's first character (0 at padding).
        Returns:
            (S, T, out_dim) float; rows at padded word positions are arbitrary.
        """
        if self.bucket_size > 0 and not torch.is_grad_enabled() and char_ids.device.type == "cpu" and type(self.lstm) is nn.LSTM:
            return self._predict_in_groups(char_ids, char_lengths, fw_index, bw_index)
        # Pack the ids, not the embeddings: no padded (S, C, D) tensor is ever built.
        ids = pack_padded_sequence(char_ids, char_lengths.cpu(), batch_first=True, enforce_sorted=False)
        emb = self.dropout(self.embed(ids.data))  # (N_chars, char_dim), time-major packed order
        packed = PackedSequence(emb, ids.batch_sizes, ids.sorted_indices, ids.unsorted_indices)
        out = run_lstm(self.lstm, packed)  # out.data: (N_chars, 2H)
        H = self.hidden_dim
        fw = out.data[packed_rows(out, fw_index), :H]  # (S, T, H) forward state at the space after word t
        bw = out.data[packed_rows(out, bw_index), H:]  # (S, T, H) backward state at word t's first char
        return self.proj(torch.cat([fw, bw], dim=-1))  # (S, T, out_dim)

    def _predict_in_groups(
        self, char_ids: torch.Tensor, char_lengths: torch.Tensor, fw_index: torch.Tensor, bw_index: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` at prediction on a CPU: the sequences, sorted by
        length, run in groups of ``bucket_size``, each padded to its own
        longest one, on oneDNN (:func:`spacy_ldnet.torch_utils.lstm_over_padded`).
        A narrow LSTM over long character streams spends its time in the
        native kernel's per-step overhead, which oneDNN runs inside one call
        (docs/results.md, "Settings chosen by measurement"). Same arguments
        and result as :meth:`forward`, equal up to float rounding."""
        lengths = char_lengths.cpu()  # (S,)
        H = self.hidden_dim
        feats = self.proj.weight.new_empty((fw_index.shape[0], fw_index.shape[1], 2 * H))  # (S, T, 2H)
        for group in torch.argsort(lengths, descending=True).split(self.bucket_size):  # (G,) each
            n = lengths[group]  # (G,)
            emb = self.embed(char_ids[group, : int(n.max())])  # (G, C_g, char_dim)
            out = lstm_over_padded(self.lstm, emb, n, onednn=True)  # (G, C_g, 2H)
            fw = out[..., :H].gather(1, fw_index[group].unsqueeze(-1).expand(-1, -1, H))  # (G, T, H)
            bw = out[..., H:].gather(1, bw_index[group].unsqueeze(-1).expand(-1, -1, H))  # (G, T, H)
            feats[group] = torch.cat([fw, bw], dim=-1)
        return self.proj(feats)  # (S, T, out_dim)


class FinetunedWordEmbedding(nn.Module):
    """Pretrained word embeddings whose most frequent rows are fine-tuned.

    The pretrained table itself lives outside the module (in spaCy's vectors
    table). Its first ``n_rows`` rows are copied into the trainable ``weight``
    at initialisation; rows beyond them are passed in frozen; unknown words
    (row -1) share one trained ``<unk>`` vector (the last row of ``weight``).
    With plain SGD or Adam this equals fine-tuning the whole table, since rows
    of words never seen in training receive no gradient anyway, while the
    saved model holds only ``n_rows`` rows.

    Word dropout (training only): each token is read as ``<unk>`` with
    probability ``word_dropout``, so the tagger cannot rely on the vectors of
    the words (entity names) it has seen in training and learns to use the
    character and context features too (the unknown-word replacement of
    Lample et al. 2016, section 4, applied per token instead of to singletons).

    Args:
        n_rows: trainable rows (GloVe rows 0..n_rows-1, frequency order).
        dim: embedding width (must equal the vectors table's width).
        word_dropout: probability in [0, 1) of reading a token as ``<unk>`` in training.

    Raises: ValueError if ``word_dropout`` is outside [0, 1).
    """

    def __init__(self, n_rows: int, dim: int, word_dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        self.n_rows = n_rows
        self.word_dropout = word_dropout
        self.weight = nn.Parameter(torch.empty(n_rows + 1, dim).normal_(0.0, 0.1))

    def forward(self, rows: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
        """
        Args:
            rows: (...,) long, row of each word in the vectors table, -1 if absent.
            frozen: (..., dim) float, the table's vector for rows >= n_rows (else ignored).
        Returns:
            (..., dim) float.
        """
        unk = self.n_rows
        if self.training and self.word_dropout > 0.0:
            drop = torch.rand(rows.shape, device=rows.device) < self.word_dropout  # (...,) bool
            rows = torch.where(drop, torch.full_like(rows, -1), rows)
        idx = torch.where(rows < 0, torch.full_like(rows, unk), torch.where(rows < unk, rows, torch.full_like(rows, unk)))
        tuned = self.weight[idx]  # (..., dim)
        use_frozen = (rows >= unk).unsqueeze(-1)  # (..., 1)
        return torch.where(use_frozen, frozen.to(tuned.dtype), tuned)


#: Word shape classes of :class:`CaseEmbedding` (0 is padding).
N_CASE_CLASSES = 7


class CaseEmbedding(nn.Module):
    """Embedding of a token's word shape: lower, UPPER, Title, digits,
    punctuation, other (the "caps" feature of Collobert et al. 2011, JMLR).

    The GloVe lookup is lower-cased, so this gives the word feature back the
    case the lookup drops; ids come from
    :func:`spacy_ldnet.embed.featurize.case_ids_for`.

    Args:
        width: embedding width.
    """

    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Embedding(N_CASE_CLASSES, width, padding_idx=0)

    def forward(self, case_ids: torch.Tensor) -> torch.Tensor:
        """(S, T) long -> (S, T, width) float."""
        return self.embed(case_ids)


class CharWordEmbedder(nn.Module):
    """[word embedding; character BiLSTM feature(; case feature)] per token
    (LD-Net section 4.1).

    Output width is ``word_dim + char_out_dim + case_dim``.
    """

    def __init__(
        self,
        *,
        n_word_rows: int,
        word_dim: int,
        n_chars: int,
        char_dim: int,
        char_hidden_dim: int,
        char_out_dim: int,
        char_dropout: float = 0.0,
        word_dropout: float = 0.0,
        case_dim: int = 0,
    ):
        super().__init__()
        self.words = FinetunedWordEmbedding(n_word_rows, word_dim, word_dropout)
        self.chars = CharBiLSTM(n_chars, char_dim, char_hidden_dim, char_out_dim, char_dropout)
        self.case = CaseEmbedding(case_dim) if case_dim > 0 else None
        self.output_dim = word_dim + char_out_dim + case_dim

    def forward(
        self,
        word_rows: torch.Tensor,
        frozen_vectors: torch.Tensor,
        char_ids: torch.Tensor,
        char_lengths: torch.Tensor,
        fw_index: torch.Tensor,
        bw_index: torch.Tensor,
        case_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            word_rows: (S, T) long; frozen_vectors: (S, T, word_dim) float;
            char_ids, char_lengths, fw_index, bw_index: as in :class:`CharBiLSTM`;
            case_ids: (S, T) long word-shape ids, required when ``case_dim > 0``.
        Returns:
            (S, T, word_dim + char_out_dim + case_dim) float.
        Raises: ValueError if the module has a case feature and ``case_ids`` is None.
        """
        w = self.words(word_rows, frozen_vectors)  # (S, T, word_dim)
        c = self.chars(char_ids, char_lengths, fw_index, bw_index)  # (S, T, char_out_dim)
        if self.case is None:
            return torch.cat([w, c], dim=-1)
        if case_ids is None:
            raise ValueError("This CharWordEmbedder has a case feature (case_dim > 0): pass case_ids.")
        return torch.cat([w, c, self.case(case_ids)], dim=-1)  # (S, T, Dw + Dc + Dcase)
