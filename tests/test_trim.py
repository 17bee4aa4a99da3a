"""spacy-ldnet trim-vectors: the fine-tuned rows move into nlp.vocab.vectors,
which keeps its first rows; kept words get exactly the vectors they had."""
import subprocess
import sys

import numpy
import pytest
import spacy
from thinc.api import Config

from spacy_ldnet.embed.trim import TrimError, find_word_tables, save_trimmed, trim_word_vectors
from spacy_ldnet.sequences import Sequences

from conftest import REPO, TRAIN_DATA

TEXTS = [text for text, _ in TRAIN_DATA] + ["Paris and London beat Google in the final ."]


def tag_marginals(nlp, texts):
    pipe = nlp.get_pipe("ldnet_ner")
    return [numpy.asarray(s) for s in pipe.tag_marginals([nlp.make_doc(t) for t in texts])]


def word_embeddings(nlp, text):
    """(T, width) word-feature rows of the embedder for one text, in eval mode."""
    _, node, words = find_word_tables(nlp)[0]
    from spacy_ldnet.embed.featurize import featurize
    import torch

    doc = nlp.make_doc(text)
    feats = featurize(Sequences.from_docs([doc], 32), n_word_rows=node.attrs["n_word_rows"],
                      word_dim=node.attrs["word_width"], n_chars=node.attrs["n_chars"],
                      row_scales=node.attrs.get("word_row_scales"))
    words.eval()
    with torch.no_grad():
        out = words(torch.from_numpy(feats.word_rows), torch.from_numpy(feats.frozen_vectors))
    return out[0, : len(doc)].numpy(), feats.word_rows[0, : len(doc)]


def test_keeping_every_row_changes_no_output(trained_nlp, trained_pipeline_path, tmp_path):
    before = tag_marginals(trained_nlp, TEXTS)
    ents_before = [[(e.start, e.end, e.label_) for e in d.ents] for d in trained_nlp.pipe(TEXTS)]
    n = trained_nlp.vocab.vectors.shape[0]
    report = trim_word_vectors(trained_nlp, n)
    assert report.new_rows == n and report.removed_keys == [] and report.tuned_rows == n
    save_trimmed(trained_nlp, report, tmp_path / "trimmed")
    config = Config().from_disk(tmp_path / "trimmed" / "config.cfg")
    assert config["components"]["ldnet_ner"]["model"]["tok2vec"]["n_word_rows"] == 0
    nlp = spacy.load(tmp_path / "trimmed")
    assert tuple(find_word_tables(nlp)[0][2].weight.shape) == (1, 16)  # only <unk> is left in the model
    for got, want in zip(tag_marginals(nlp, TEXTS), before):
        numpy.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(TEXTS)] == ents_before
    model_bytes = (trained_pipeline_path / "ldnet_ner" / "model").stat().st_size
    assert (tmp_path / "trimmed" / "ldnet_ner" / "model").stat().st_size < model_bytes


def test_dropped_rows_read_unk_and_kept_rows_keep_their_fine_tuned_vectors(trained_nlp, tmp_path):
    text = "John Smith flew to Paris with Air France ."
    before, rows = word_embeddings(trained_nlp, text)
    unk = find_word_tables(trained_nlp)[0][2].weight[-1].detach().numpy().copy()
    keep = int(numpy.sort(rows[rows >= 0])[len(rows) // 2])  # about half the words of the text keep their row
    report = trim_word_vectors(trained_nlp, keep)
    assert len(report.removed_keys) == report.old_rows - keep
    save_trimmed(trained_nlp, report, tmp_path / "trimmed")
    nlp = spacy.load(tmp_path / "trimmed")
    after, new_rows = word_embeddings(nlp, text)
    for i, row in enumerate(rows):
        if 0 <= row < keep:
            assert new_rows[i] == row
            numpy.testing.assert_array_equal(after[i], before[i])  # the fine-tuned row, now read frozen
        else:
            assert new_rows[i] == -1
            numpy.testing.assert_array_equal(after[i], unk)
    assert len(nlp.vocab.vectors) == keep


def test_a_pipeline_without_a_word_table_or_rows_is_refused(trained_nlp):
    with pytest.raises(TrimError, match="no spacy_ldnet embedder"):
        trim_word_vectors(spacy.blank("en"), 10)
    with pytest.raises(TrimError, match="at least 1"):
        trim_word_vectors(trained_nlp, 0)


def test_cli_writes_the_trimmed_pipeline(trained_pipeline_path, tmp_path):
    script = REPO / ".venv" / "bin" / "spacy-ldnet"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "spacy_ldnet.cli"]
    out = tmp_path / "trimmed"
    proc = subprocess.run([*cmd, "trim-vectors", str(trained_pipeline_path), str(out), "--rows", "20"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-> 20 rows" in proc.stdout
    assert len(spacy.load(out).vocab.vectors) == 20
    assert not (tmp_path / "trimmed.partial").exists()


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_compact_storage_reads_each_kept_row_to_within_its_rounding(trained_nlp, tmp_path, dtype):
    text = "John Smith flew to Paris with Air France ."
    before, rows = word_embeddings(trained_nlp, text)
    report = trim_word_vectors(trained_nlp, trained_nlp.vocab.vectors.shape[0], dtype)
    save_trimmed(trained_nlp, report, tmp_path / "trimmed")
    nlp = spacy.load(tmp_path / "trimmed")
    assert nlp.vocab.vectors.data.dtype == numpy.dtype(dtype)
    after, _ = word_embeddings(nlp, text)
    known = rows >= 0
    # int8: one scale per row, error at most half a step (max |row| / 254); float16: 11 bits of mantissa
    bound = numpy.abs(before[known]).max(axis=1, keepdims=True) / (254 if dtype == "int8" else 1024)
    assert (numpy.abs(after[known] - before[known]) <= bound + 1e-7).all()
    assert not numpy.array_equal(after[known], before[known])  # stored compactly, not as before


def test_an_int8_table_without_its_scales_is_refused(trained_nlp, tmp_path):
    report = trim_word_vectors(trained_nlp, 20, "int8")
    save_trimmed(trained_nlp, report, tmp_path / "trimmed")
    nlp = spacy.load(tmp_path / "trimmed")
    _, node, _ = find_word_tables(nlp)[0]
    assert len(node.attrs["word_row_scales"]) == 20
    node.attrs["word_row_scales"] = None
    with pytest.raises(ValueError, match="int8"):
        list(nlp.pipe(["John Smith flew to Paris ."]))


def test_the_trimmed_string_store_holds_no_training_words(trained_nlp, tmp_path):
    import srsly

    report = trim_word_vectors(trained_nlp, trained_nlp.vocab.vectors.shape[0])
    save_trimmed(trained_nlp, report, tmp_path / "trimmed")
    strings = set(srsly.read_json(tmp_path / "trimmed" / "vocab" / "strings.json"))
    assert strings <= set(spacy.blank("en").vocab.strings) | {"PER", "LOC", "ORG", "MISC"}
    assert not strings & {"Smith", "Jones", "Olympic", "Germany"}  # words of the training examples
    nlp = spacy.load(tmp_path / "trimmed")
    assert [(e.text, e.label_) for e in nlp("John Smith flew to Paris .").ents]  # still annotates
