"""project/gpu_lms.py: the inputs it decompresses and the chunks it returns."""
import lzma
import tarfile
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_an_xz_input_is_decompressed_once_and_plain_or_gzip_inputs_are_used_as_they_are(tmp_path):
    gpu = load_script(ROOT / "project" / "gpu_lms.py", "gpu_lms")
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir(), work.mkdir()
    with lzma.open(data / "wiki_shard.tok.txt.xz", "wt", encoding="utf-8") as f:
        f.write("a b c\nd e\n")
    (data / "wiki_valid.tok.txt.gz").write_bytes(b"\x1f\x8b")
    shard = gpu.find_input(data, "wiki_shard.tok.txt", work)
    assert shard == work / "wiki_shard.tok.txt" and shard.read_text(encoding="utf-8") == "a b c\nd e\n"
    shard.write_text("kept\n", encoding="utf-8")  # newer than the .xz: a second call must not decompress again
    assert gpu.find_input(data, "wiki_shard.tok.txt", work).read_text(encoding="utf-8") == "kept\n"
    assert gpu.find_input(data, "wiki_valid.tok.txt", work) == data / "wiki_valid.tok.txt.gz"
    with pytest.raises(SystemExit, match="lm_shard.py"):
        gpu.find_input(data, "glove_vocab30k.50d.txt", work)


def test_chunks_are_at_most_the_limit_and_join_back_to_the_folder(tmp_path):
    gpu = load_script(ROOT / "project" / "gpu_lms.py", "gpu_lms")
    lms = tmp_path / "lms"
    (lms / "forward").mkdir(parents=True)
    payload = bytes(range(256)) * 9000  # 2.3 MB
    (lms / "forward" / "model.safetensors").write_bytes(payload)
    (lms / "forward.stdout").write_text("Done\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu.pack_chunks(lms, out, 1)
    assert len(parts) == 3 and all(p.stat().st_size <= 1 << 20 for p in parts)
    assert not (out / "lms.tar").exists()
    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(parts)))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp_path / "back", filter="data")
    assert (tmp_path / "back" / "lms" / "forward" / "model.safetensors").read_bytes() == payload
    assert (tmp_path / "back" / "lms" / "forward.stdout").read_text(encoding="utf-8") == "Done\n"
