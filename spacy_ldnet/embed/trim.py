"""Make a trained pipeline's word-vector table small enough to ship.

A trained ``ldnet_ner`` pipeline holds two word tables: the pretrained table in
``nlp.vocab.vectors`` (GloVe 6B 50d: 400,000 rows, 80 MB) and, inside the
model, the fine-tuned copy of its first ``n_word_rows`` rows
(:class:`spacy_ldnet.embed.modules.FinetunedWordEmbedding`). Words at rows
>= ``n_word_rows`` are read frozen from the vectors table.

:func:`trim_word_vectors` writes the fine-tuned rows into the vectors table
itself, keeps only its first ``n_rows`` rows (GloVe rows are in frequency
order) and sets the model's ``n_word_rows`` to 0, keeping its trained
``<unk>`` row. Every word whose row is kept gets exactly the vector it had
before (the outputs do not change for it); a word whose row is dropped is read
as ``<unk>``, like any word outside GloVe. What that costs in F1 is measured
with ``spacy evaluate`` on the trimmed pipeline.

An embedder whose LMs read words outside their vocabulary from the vectors
table (``LMEmbedder.v3``, ``lm_oov_vectors``) needs the table's pretrained
rows as they were in training, so for it the fine-tuned rows stay in the
model (``n_word_rows`` unchanged) and the table is only cut and stored
compactly.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import spacy
import srsly
import torch
from spacy.language import Language
import numpy
from thinc.api import Config, Model, get_array_module

from ..thinc_utils import to_host, torch_module
from .modules import FinetunedWordEmbedding


class TrimError(ValueError):
    """The pipeline cannot be trimmed as asked; the message names the fix."""


@dataclass
class TrimReport:
    component: str  # name of the pipe whose word table was moved
    old_rows: int  # rows of nlp.vocab.vectors before
    new_rows: int  # rows kept
    tuned_rows: int  # fine-tuned rows moved into the vectors table (then the model's n_word_rows is 0)
    removed_keys: List[int]  # vector keys whose rows were dropped


def find_word_tables(nlp: Language) -> List[Tuple[str, Model, FinetunedWordEmbedding]]:
    """``(pipe name, embedder layer, torch word table)`` of every pipe whose
    model holds a :class:`FinetunedWordEmbedding` (``CharWordEmbedder`` and
    ``LMEmbedder`` layers, recognised by their ``n_word_rows`` setting)."""
    found = []
    for name, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            if "n_word_rows" not in node.attrs or not node.layers:
                continue
            module = torch_module(node.layers[0])
            words = getattr(getattr(module, "char_word", module), "words", None)
            if isinstance(words, FinetunedWordEmbedding):
                found.append((name, node, words))
    return found


#: Storage types of the trimmed table: bytes per value 4, 2, 1 (int8 with one float32 scale per row).
DTYPES = ("float32", "float16", "int8")


def quantize_rows(data: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Symmetric int8 quantization with one scale per row.

    Args: data, (N, D) float32.
    Returns: ``(q, scales)``: q (N, D) int8 with ``|q| <= 127``, scales (N,)
    float32 = max |row| / 127 (1.0 for an all-zero row), so that
    ``|q * scales[:, None] - data| <= scales[:, None] / 2``.
    """
    absmax = numpy.abs(data).max(axis=1)  # (N,)
    scales = numpy.where(absmax > 0, absmax / 127.0, 1.0).astype("float32")  # (N,)
    q = numpy.clip(numpy.rint(data / scales[:, None]), -127, 127).astype("int8")  # (N, D)
    return q, scales


def trim_word_vectors(nlp: Language, n_rows: int, dtype: str = "float32") -> TrimReport:
    """Move the fine-tuned rows into ``nlp.vocab.vectors`` and keep its first ``n_rows`` rows, in place.

    Args:
        nlp: a trained pipeline with one ``ldnet_ner`` embedder and a
            ``nlp.vocab.vectors`` table in spaCy's default mode.
        n_rows: rows of the vectors table to keep (frequency order), >= 1.
        dtype: how the kept rows are stored (:data:`DTYPES`): float32 (exact),
            float16, or int8 with one scale per row (:func:`quantize_rows`;
            the scales are kept in the embedder's ``word_row_scales`` attribute
            and applied by :func:`spacy_ldnet.embed.featurize.featurize`).

    Returns: a :class:`TrimReport`. Save with :func:`save_trimmed`, which also
    writes ``n_word_rows = 0`` into ``config.cfg`` when rows were moved (spaCy
    rebuilds the model from the config before it loads the weights). With
    ``lm_oov_vectors`` no row is moved (module docstring).

    Raises:
        TrimError: no or several embedders with a word table, an empty or
            floret vectors table, a width mismatch, ``n_rows`` < 1 or an unknown ``dtype``.
    """
    tables = find_word_tables(nlp)
    if not tables:
        raise TrimError("This pipeline has no spacy_ldnet embedder with a word table: nothing to trim.")
    if len(tables) > 1:
        names = ", ".join(name for name, _, _ in tables)
        raise TrimError(
            f"Several pipes hold a fine-tuned word table ({names}); they share one vectors table, so "
            f"their rows cannot all be moved into it. Fix: trim a pipeline with one such pipe."
        )
    name, node, words = tables[0]
    vectors = nlp.vocab.vectors
    if vectors.mode != "default":
        raise TrimError(f"The vectors table is in {vectors.mode!r} mode; only the default mode can be trimmed.")
    if vectors.shape[0] == 0:
        raise TrimError("nlp.vocab.vectors is empty: nothing to trim. Fix: pass a trained pipeline.")
    if n_rows < 1:
        raise TrimError(f"--rows must be at least 1, got {n_rows}.")
    if dtype not in DTYPES:
        raise TrimError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if vectors.data.dtype != numpy.float32:
        raise TrimError(f"The vectors table is already stored as {vectors.data.dtype}: trim the pipeline it came from.")
    weight = words.weight.detach().to("cpu").numpy()  # (K + 1, dim): K tuned rows, then <unk>
    K, dim = words.n_rows, weight.shape[1]
    if vectors.shape[1] != dim:
        raise TrimError(f"The vectors table has width {vectors.shape[1]} but the model's word table {dim}.")
    old_rows = int(vectors.shape[0])
    n_rows = min(n_rows, old_rows)
    # The LMs of an lm_oov_vectors embedder read pretrained rows of the table: the tuned rows stay in the model.
    moved = 0 if node.attrs.get("lm_oov_vectors", False) else min(K, old_rows)
    xp = get_array_module(vectors.data)
    vectors.data[:moved] = xp.asarray(weight[:moved])  # the fine-tuned rows, read from here on
    removed = vectors.resize((n_rows, dim), inplace=False)  # [(key, row)] of the dropped rows
    if dtype == "int8":
        q, scales = quantize_rows(numpy.asarray(to_host(vectors.data), dtype="float32"))
        vectors.data = xp.asarray(q)
        node.attrs["word_row_scales"] = scales
    elif dtype == "float16":
        vectors.data = vectors.data.astype("float16")
    if moved:
        with torch.no_grad():
            words.weight = torch.nn.Parameter(words.weight[K:].detach().clone())  # (1, dim): <unk> only
        words.n_rows = 0
        node.attrs["n_word_rows"] = 0
    return TrimReport(name, old_rows, n_rows, moved, [int(key) for key, _ in removed])


def save_trimmed(nlp: Language, report: TrimReport, output: Path) -> None:
    """``nlp.to_disk(output)``, then set the trimmed pipe's ``n_word_rows`` to 0
    in ``config.cfg`` (if its rows were moved) and reduce ``vocab/strings.json`` to the strings a blank
    pipeline of the language starts with plus the pipes' labels.

    The string store of a trained pipeline holds every word type of its
    training corpus; the pipeline needs none of them (vector rows are found
    by hash, and spaCy adds the strings of new text as it reads it), and a
    corpus under a research-only licence should not travel inside it.
    """
    nlp.to_disk(output)
    cfg_path = output / "config.cfg"
    config = Config().from_disk(cfg_path, interpolate=False)
    blocks = [config["components"][report.component]] if report.tuned_rows else []
    while blocks:  # the embedder block is nested in the tagger's: find n_word_rows
        block = blocks.pop()
        if "n_word_rows" in block:
            block["n_word_rows"] = 0
        blocks.extend(v for v in block.values() if isinstance(v, dict))
    config.to_disk(cfg_path)
    keep = set(spacy.blank(nlp.lang).vocab.strings)
    for _, pipe in nlp.pipeline:
        keep.update(str(label) for label in getattr(pipe, "labels", ()) or ())
    strings_path = output / "vocab" / "strings.json"
    srsly.write_json(strings_path, [s for s in srsly.read_json(strings_path) if s in keep])
