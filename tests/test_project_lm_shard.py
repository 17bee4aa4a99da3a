"""project/lm_shard.py: the text a GPU continuation of the shipped LMs trains on."""
import gzip
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _corpus(path: Path, n_lines: int) -> list:
    lines = [" ".join(f"w{i}_{j}" for j in range(i % 5 + 1)) for i in range(n_lines)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def _read(path: Path) -> list:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def test_shard_starts_after_the_skipped_tokens_with_whole_lines(tmp_path):
    shard = load_script(ROOT / "project" / "lm_shard.py", "lm_shard")
    lines = _corpus(tmp_path / "train.gz", 200)
    skipped, taken, n = shard.write_shard(tmp_path / "train.gz", tmp_path / "shard.gz", 7, 10**9)
    out = _read(tmp_path / "shard.gz")
    # lines of 1, 2, 3, 4 tokens reach 10 >= 7: the shard begins with the fifth line, whole
    assert skipped == 10 and out[0] == lines[4]
    assert out == lines[4:] and n == len(out) == 196
    assert taken == sum(len(line.split()) for line in lines[4:])


def test_shard_stops_once_over_its_size_and_head_stops_after_its_tokens(tmp_path):
    shard = load_script(ROOT / "project" / "lm_shard.py", "lm_shard")
    lines = _corpus(tmp_path / "train.gz", 5000)
    _, _, n = shard.write_shard(tmp_path / "train.gz", tmp_path / "shard.gz", 0, 1, check_every=100)
    assert n == 100 and _read(tmp_path / "shard.gz") == lines[:100]
    written = shard.write_head(tmp_path / "train.gz", tmp_path / "head.gz", 20)
    head = _read(tmp_path / "head.gz")
    assert written == sum(len(line.split()) for line in head) > 20
    assert sum(len(line.split()) for line in head[:-1]) <= 20 and head == lines[: len(head)]


def test_shard_stops_at_its_line_cap_and_xz_keeps_the_text(tmp_path):
    import lzma

    shard = load_script(ROOT / "project" / "lm_shard.py", "lm_shard")
    lines = _corpus(tmp_path / "train.gz", 300)
    _, _, n = shard.write_shard(tmp_path / "train.gz", tmp_path / "shard.txt.gz", 0, 10**9, max_lines=37)
    assert n == 37 and _read(tmp_path / "shard.txt.gz") == lines[:37]
    xz = shard.gzip_to_xz(tmp_path / "shard.txt.gz")
    assert xz.name == "shard.txt.xz" and not (tmp_path / "shard.txt.gz").exists()
    with lzma.open(xz, "rt", encoding="utf-8") as f:
        assert f.read().splitlines() == lines[:37]
