"""``spacy-ldnet annotate --ray``: a local Ray instance, two actors; the same
shards as ``nlp.pipe`` (skipped without Ray installed). Its plan and read
steps, which resume at byte offsets, are tested without Ray in test_annotate.py."""
import logging

import pytest
import srsly

from annotate_helpers import expected_records, read_shards, write_corpus
from spacy_ldnet.annotate import AnnotateSettings, annotate

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (annotate uses a running instance and leaves it running)."""
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
