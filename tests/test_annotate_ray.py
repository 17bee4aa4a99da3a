"""``spacy-ldnet annotate --ray``: a local Ray instance, two actors; the same
shards as ``nlp.pipe`` (skipped without Ray installed). Its plan and read
steps, which resume at byte offsets, are tested without Ray in test_annotate.py."""
import logging
import socket

import pytest
import srsly

from annotate_helpers import expected_records, read_shards, write_corpus
from spacy_ldnet.annotate import AnnotateError, AnnotateSettings, annotate

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture
def local_ray():
    """A local Ray instance with room for 2 actors and a read task (annotate uses a running instance and leaves it running)."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def test_ray_output_equals_nlp_pipe(local_ray, trained_pipeline_path, tmp_path):
    records = write_corpus(tmp_path / "in")
    expected = expected_records(trained_pipeline_path, records)
    out = tmp_path / "out"
    settings = AnnotateSettings(shard_size=6, n_process=2, batch_size=4, ray=True, progress=False)
    summary = annotate(str(trained_pipeline_path), str(tmp_path / "in"), out, settings)
    assert read_shards(out) == expected
    manifest = srsly.read_json(out / "manifest.json")
    assert manifest["complete"] and manifest["docs"] == len(expected) == summary.docs


def test_unreachable_ray_address_fails_at_once(trained_pipeline_path, tmp_path):
    (tmp_path / "in.txt").write_text("Paris .\n", encoding="utf8")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = AnnotateSettings(ray=True, ray_address=f"127.0.0.1:{port}", progress=False)
    with pytest.raises(AnnotateError, match=f"--ray-address 127.0.0.1:{port}: nothing answers there"):
        annotate(str(trained_pipeline_path), str(tmp_path / "in.txt"), tmp_path / "out", settings)
