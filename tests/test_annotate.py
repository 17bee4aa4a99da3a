"""``spacy-ldnet annotate`` without Ray: output equal to ``nlp.pipe``, formats,
resuming, and errors (the Ray mode and the kill test have their own files)."""
import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin, SpanGroup

from annotate_helpers import expected_records, read_shards, sentences, write_corpus
from spacy_ldnet.annotate import AnnotateError, AnnotateSettings, annotate
from spacy_ldnet.annotate.inputs import find_inputs, iter_lines
from spacy_ldnet.annotate.ray_mode import read_shard, shard_plan
from spacy_ldnet.annotate.records import annotations
from spacy_ldnet.annotate.shards import Manifest, pending_lines

SCRIPT = Path(sys.executable).parent / "spacy-ldnet"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, trained_pipeline_path):
    """(input folder, expected output records) of a text file with blank lines and a gzip JSONL file."""
    folder = tmp_path_factory.mktemp("corpus") / "in"
    records = write_corpus(folder)
    return folder, expected_records(trained_pipeline_path, records)


def settings(**kw) -> AnnotateSettings:
    return AnnotateSettings(progress=False, **kw)


@pytest.mark.parametrize("n_process", [1, 2])
def test_output_equals_nlp_pipe_in_input_order(trained_pipeline_path, corpus, tmp_path, n_process):
    folder, expected = corpus
    summary = annotate(str(trained_pipeline_path), str(folder), tmp_path / "out", settings(shard_size=7, n_process=n_process, batch_size=4))
    assert read_shards(tmp_path / "out") == expected
    assert any(r["entities"] for r in expected)
    names = sorted(p.name for p in (tmp_path / "out").glob("shard-*"))
    assert names == [f"shard-{i:06d}.jsonl" for i in range(-(-len(expected) // 7))]
    manifest = srsly.read_json(tmp_path / "out" / "manifest.json")
    assert manifest["complete"] and manifest["docs"] == len(expected) == summary.docs
    assert summary.words == sum(len(r["text"].split()) for r in expected)  # the tokenizer splits on the spaces here


def test_glob_input_and_spacy_format_keep_fields(trained_pipeline_path, corpus, tmp_path):
    folder, expected = corpus
    out = tmp_path / "out"
    annotate(str(trained_pipeline_path), str(folder / "*.jsonl.gz"), out, settings(format="spacy", shard_size=5))
    jsonl = [r for r in expected if "id" in r]
    nlp = spacy.blank("en")
    docs = [doc for path in sorted(out.glob("shard-*.spacy")) for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]
    assert [doc.text for doc in docs] == [r["text"] for r in jsonl]
    assert [doc.user_data["fields"] for doc in docs] == [{"id": r["id"], "meta": r["meta"]} for r in jsonl]
    got = [[{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents] for doc in docs]
    assert got == [r["entities"] for r in jsonl]


def test_spans_mode_pipeline_writes_its_span_group(trained_pipeline_path, tmp_path):
    spans_config = {"components": {"ldnet_ner": {"spans_key": "chunks", "scorer": {"@scorers": "spacy.spancat_scorer.v1"}}}}
    nlp = spacy.load(trained_pipeline_path, config=spans_config)
    nlp.to_disk(tmp_path / "spans_pipeline")
    texts = sentences(6, seed=3)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf8")
    annotate(str(tmp_path / "spans_pipeline"), str(tmp_path / "in.txt"), tmp_path / "out", settings())
    records = read_shards(tmp_path / "out")
    want = [[{"start": s.start_char, "end": s.end_char, "label": s.label_} for s in doc.spans["chunks"]] for doc in nlp.pipe(texts)]
    assert [r["spans"]["chunks"] for r in records] == want and any(want)
    assert all("entities" not in r for r in records)  # spans mode leaves doc.ents alone


def test_span_scores_are_written_when_the_group_has_them():
    nlp = spacy.blank("en")
    doc = nlp("Paris and London are cities")
    doc.spans["loc"] = SpanGroup(doc, spans=[doc[0:1], doc[2:3]], attrs={"scores": [0.25, 0.75]})
    doc.spans["plain"] = [doc[4:5]]
    out = annotations(doc, ents=False)
    assert out["spans"]["loc"] == [{"start": 0, "end": 5, "label": "", "score": 0.25}, {"start": 10, "end": 16, "label": "", "score": 0.75}]
    assert out["spans"]["plain"] == [{"start": 21, "end": 27, "label": ""}]


def test_rerun_rewrites_only_missing_shards(trained_pipeline_path, corpus, tmp_path):
    folder, expected = corpus
    out = tmp_path / "out"
    annotate(str(trained_pipeline_path), str(folder), out, settings(shard_size=10))
    (out / "shard-000001.jsonl").unlink()
    (out / "shard-000003.jsonl.tmp").write_text("half a shard\n")  # as a killed run leaves it
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.jsonl")}
    summary = annotate(str(trained_pipeline_path), str(folder), out, settings(shard_size=10))
    assert summary.docs == 10 and summary.skipped_docs == len(expected) - 10
    assert read_shards(out) == expected
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.jsonl") if p.name in before} == before
    assert not list(out.glob("*.tmp"))


def test_ray_plan_reads_the_pending_shards_at_their_offsets(trained_pipeline_path, corpus, tmp_path):
    folder, expected = corpus  # 23 text lines, then 17 gzip JSONL lines
    out = tmp_path / "out"
    annotate(str(trained_pipeline_path), str(folder), out, settings(shard_size=6))
    for shard in (3, 5):  # 3 (documents 18-23) spans both files; 5 starts inside the gzip file
        (out / f"shard-{shard:06d}.jsonl").unlink()
    inputs = find_inputs(str(folder))
    manifest = Manifest.open(out, srsly.read_json(out / "manifest.json")["settings"])
    plan = shard_plan(pending_lines(iter_lines(inputs), manifest, 6, out), inputs, settings(shard_size=6))
    assert [(row["shard"], row["docs"]) for row in plan] == [(3, 6), (5, 6)]
    rows = [r for row in plan for r in read_shard(row, inputs)]
    want = [line for line in iter_lines(inputs) if line.index // 6 in (3, 5)]
    assert [(r["index"], r["file"], r["line_no"], r["raw"]) for r in rows] == [(w.index, w.file, w.line_no, w.raw) for w in want]


def test_rerun_after_the_input_grew_rewrites_the_short_last_shard(trained_pipeline_path, tmp_path):
    texts = sentences(13, seed=5)
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts[:8]) + "\n", encoding="utf8")
    out = tmp_path / "out"
    annotate(str(trained_pipeline_path), str(path), out, settings(shard_size=5))
    path.write_text("\n".join(texts) + "\n", encoding="utf8")
    summary = annotate(str(trained_pipeline_path), str(path), out, settings(shard_size=5))
    assert summary.docs == 8 and summary.skipped_docs == 5
    assert read_shards(out) == expected_records(trained_pipeline_path, [{"text": t} for t in texts])


def test_rerun_on_changed_input_is_an_error(trained_pipeline_path, tmp_path):
    texts = sentences(12, seed=6)
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf8")
    out = tmp_path / "out"
    annotate(str(trained_pipeline_path), str(path), out, settings(shard_size=5))
    path.write_text("\n".join(texts[:6] + ["A changed line ."] + texts[7:]) + "\n", encoding="utf8")
    with pytest.raises(AnnotateError, match=r"shard-000001\.jsonl was written from other input .*documents 5-9"):
        annotate(str(trained_pipeline_path), str(path), out, settings(shard_size=5))
    with pytest.raises(AnnotateError, match="shard_size = 5, this run has 4"):
        annotate(str(trained_pipeline_path), str(path), out, settings(shard_size=4))


@pytest.mark.parametrize("content,message", [
    ('{"text": "ok"}\n{"text": "fine"\n', r"b\.jsonl:2: not JSON"),
    ('{"text": "ok"}\n\n[1, 2]\n', r"b\.jsonl:3: a JSON list, not an object"),
    ('{"body": "ok"}\n', r"b\.jsonl:1: no field 'text' \(fields: body\)\. Fix: pass --text-field"),
    ('{"text": 3}\n', r"b\.jsonl:1: field 'text' is a int, not a string"),
])
def test_bad_jsonl_lines_are_named_by_file_and_line(trained_pipeline_path, tmp_path, content, message):
    (tmp_path / "b.jsonl").write_text(content, encoding="utf8")
    with pytest.raises(AnnotateError, match=message):
        annotate(str(trained_pipeline_path), str(tmp_path / "b.jsonl"), tmp_path / "out", settings())


def test_bad_arguments(trained_pipeline_path, tmp_path):
    good = tmp_path / "in.txt"
    good.write_text("Paris .\n", encoding="utf8")
    (tmp_path / "notes.md").write_text("x\n", encoding="utf8")
    (tmp_path / "afile").write_text("x\n", encoding="utf8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x\n", encoding="utf8")
    cases = [
        ((tmp_path / "nope", good, tmp_path / "o1"), {}, r"PIPELINE .*nope not found"),
        ((tmp_path, good, tmp_path / "o2"), {}, r"not a spaCy pipeline directory \(no config\.cfg\)"),
        ((trained_pipeline_path, tmp_path / "missing.txt", tmp_path / "o3"), {}, r"INPUT .*missing\.txt not found"),
        ((trained_pipeline_path, tmp_path / "*.nothing", tmp_path / "o4"), {}, r"holds no files"),
        ((trained_pipeline_path, tmp_path / "notes.md", tmp_path / "o5"), {}, r"notes\.md: its name does not say .*--input-format"),
        ((trained_pipeline_path, good, tmp_path / "afile"), {}, r"OUTPUT .*afile is a file"),
        ((trained_pipeline_path, good, tmp_path / "full"), {}, r"OUTPUT .*full is not empty and has no manifest\.json"),
        ((trained_pipeline_path, good, tmp_path / "o6"), {"shard_size": 0}, r"--shard-size 0: must be at least 1"),
        ((trained_pipeline_path, good, tmp_path / "o7"), {"format": "csv"}, r"--format 'csv' is not one of jsonl, spacy"),
    ]
    for (pipeline, input_spec, output), kw, message in cases:
        with pytest.raises(AnnotateError, match=message):
            annotate(str(pipeline), str(input_spec), output, settings(**kw))


def test_input_inside_output_is_refused(trained_pipeline_path, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in.txt").write_text("Paris .\n", encoding="utf8")
    with pytest.raises(AnnotateError, match=r"in\.txt is inside OUTPUT"):
        annotate(str(trained_pipeline_path), str(tmp_path / "out" / "in.txt"), tmp_path / "out", settings())


def test_ray_missing_gives_the_install_hint(trained_pipeline_path, tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text("Paris .\n", encoding="utf8")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(AnnotateError, match=r"pip install 'spacy-ldnet\[ray\]'"):
        annotate(str(trained_pipeline_path), str(tmp_path / "in.txt"), tmp_path / "out", settings(ray=True))


def test_cli_bad_jsonl_line_is_one_message_without_traceback(trained_pipeline_path, tmp_path):
    path = tmp_path / "b.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf8") as f:
        f.write('{"text": "Paris ."}\n{"text": \n')
    proc = subprocess.run([str(SCRIPT), "annotate", str(trained_pipeline_path), str(path), str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"Error: {path}:2: not JSON"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
