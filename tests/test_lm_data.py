"""Tests for the LM corpus reading, vocabulary and training batches: no model, no spaCy."""
import gzip
import itertools

import pytest
import torch

from spacy_ldnet.lm.data import SPECIAL_TOKENS, LMDataError, Vocab, build_vocab, count_tokens, iter_sentences
from spacy_ldnet.lm.training.batches import BatchStream, iter_eval_batches, make_example

torch.set_num_threads(1)

ODD = [
    "Zürich is in Switzerland .",
    "",
    "The café\u00a0au lait costs 3\u2009€ .",  # NBSP and thin space stay inside tokens
    "   ",
    "Ελληνικά and 日本語 and emoji 🙂 .",
    "İstanbul\r",
]


def _write(path, lines, gz=False):
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _corpus(tmp_path, n=101, name="c.txt"):
    lines = []
    for i in range(n):
        lines.append(" ".join(f"w{(i * 7 + k) % 23}" for k in range(3 + i % 5)) + f" s{i}")
        if i % 10 == 9:
            lines.append("")  # document break
    return _write(tmp_path / name, lines)


@pytest.mark.parametrize("gz", [False, True])
def test_reader_plain_and_gzip(tmp_path, gz):
    # a .txt name holding gzip data and a .gz name holding plain text both work (magic bytes decide)
    path = _write(tmp_path / ("a.txt" if gz else "a.gz"), ODD, gz=gz)
    sents = list(iter_sentences([path]))
    assert len(sents) == 4  # empty and whitespace-only lines are document breaks
    assert sents[0] == ["Zürich", "is", "in", "Switzerland", "."]
    assert "café\u00a0au" in sents[1] and "3\u2009€" in sents[1]
    assert sents[2][-2] == "🙂"
    assert sents[3] == ["İstanbul"]  # \r stripped


def test_reader_streams(tmp_path):
    path = _corpus(tmp_path, n=50)
    it = iter_sentences([path])
    assert next(it)[-1] == "s0"  # generator, not a list
    assert sum(1 for _ in it) == 49


def test_missing_file(tmp_path):
    with pytest.raises(LMDataError, match="not found"):
        list(iter_sentences([tmp_path / "nope.txt"]))


def test_vocab_cutoffs_and_roundtrip(tmp_path):
    path = _write(tmp_path / "v.txt", ["a a a b b c", "A d", "", "b a"])
    counts, n_sent, n_tok = count_tokens([path], lowercase=True)
    assert (n_sent, n_tok) == (3, 10) and counts["a"] == 5
    v = Vocab.from_counts(counts, min_count=2)
    assert v.tokens == list(SPECIAL_TOKENS) + ["a", "b"]
    v = Vocab.from_counts(counts, max_size=5)
    assert v.tokens == list(SPECIAL_TOKENS) + ["a"]
    v = Vocab.from_counts(counts)
    assert v.tokens[4:] == ["a", "b", "c", "d"]  # ties broken by string
    assert v.encode(["A", "zzz", "d"]) == [4, v.unk_id, 7]
    v.save(tmp_path / "vocab.txt")
    assert Vocab.load(tmp_path / "vocab.txt").tokens == v.tokens
    cased = Vocab.from_counts(count_tokens([path], lowercase=False)[0], lowercase=False)
    assert "A" in cased and cased.encode(["A"]) != cased.encode(["a"])
    vocab, stats = build_vocab([path], max_size=5)
    assert stats["token_coverage"] == pytest.approx(5 / 10)
    (tmp_path / "bad.txt").write_text("a\nb\n")
    with pytest.raises(LMDataError, match="special tokens"):
        Vocab.load(tmp_path / "bad.txt")


def test_make_example_directions():
    v = Vocab(list(SPECIAL_TOKENS) + ["x", "y", "z"])
    ids = v.encode(["x", "y", "z"])  # 4 5 6
    assert make_example(ids, v, "forward") == ([2, 4, 5, 6], [4, 5, 6, 3])
    assert make_example(ids, v, "backward") == ([2, 6, 5, 4], [6, 5, 4, 3])


def _all_sentences(stream, n_batches):
    out = []
    for b in itertools.islice(iter(stream), n_batches):
        for row, n in zip(b.token_ids.tolist(), b.lengths.tolist()):
            out.append(tuple(row[1:n]))
        assert b.n_tokens == int(b.lengths.sum())
        # targets are inputs shifted by one, ending in </s>
        for x, y, n in zip(b.token_ids.tolist(), b.targets.tolist(), b.lengths.tolist()):
            assert y[: n - 1] == x[1:n] and y[n - 1] == 3 and x[0] == 2
            assert all(t == 0 for t in x[n:]) and all(t == 0 for t in y[n:])
    return out


def _epoch_batches(stream):
    """Number of batches in one epoch of this stream."""
    s = BatchStream(stream.paths, stream.vocab, batch_size=stream.batch_size, rank=stream.rank,
                    world_size=stream.world_size, buffer_size=stream.buffer_size)
    n = 0
    for _ in iter(s):
        if s.epoch > 0:
            return n
        n += 1


def test_shards_disjoint_and_cover(tmp_path):
    path = _corpus(tmp_path, n=101)
    vocab, _ = build_vocab([path])
    expected = sorted(tuple(vocab.encode(s)) for s in iter_sentences([path]))
    seen = []
    for rank in range(3):
        s = BatchStream([path], vocab, batch_size=4, rank=rank, world_size=3, buffer_size=10, seed=1)
        sents = _all_sentences(s, _epoch_batches(s))
        assert s.epoch == 0
        # rank r gets exactly the sentences r, r+3, r+6, ...
        mine = sorted(tuple(vocab.encode(x)) for i, x in enumerate(iter_sentences([path])) if i % 3 == rank)
        assert sorted(sents) == mine
        seen.extend(sents)
    assert sorted(seen) == expected  # disjoint and complete


def test_stream_deterministic_shuffled_and_resumable(tmp_path):
    path = _corpus(tmp_path, n=101)
    vocab, _ = build_vocab([path])

    def make(seed=0):
        return BatchStream([path], vocab, batch_size=4, buffer_size=16, seed=seed)

    a = [b.token_ids for b in itertools.islice(iter(make()), 60)]  # > 1 epoch (26 batches)
    b = [b.token_ids for b in itertools.islice(iter(make()), 60)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = [b.token_ids for b in itertools.islice(iter(make(seed=5)), 60)]
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))
    # epochs are shuffled differently
    first_epoch = [x for x in a[:26]]
    second_epoch = [x for x in a[26:52]]
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(first_epoch, second_epoch))
    # stop at every position, save, restart in a new object: same continuation
    for k in (0, 3, 4, 17, 26, 33):
        s = make()
        it = iter(s)
        for _ in range(k):
            next(it)
        state = s.state_dict()
        s2 = make()
        s2.load_state_dict(state)
        rest = [b.token_ids for b in itertools.islice(iter(s2), 60 - k)]
        assert all(torch.equal(x, y) for x, y in zip(a[k:], rest)), k
    with pytest.raises(LMDataError, match="batch_size"):
        BatchStream([path], vocab, batch_size=8, buffer_size=16).load_state_dict(state)


def test_stream_backward_reverses(tmp_path):
    path = _corpus(tmp_path, n=30)
    vocab, _ = build_vocab([path])
    fw = BatchStream([path], vocab, batch_size=4, buffer_size=8, direction="forward")
    bw = BatchStream([path], vocab, batch_size=4, buffer_size=8, direction="backward")
    for bf, bb in itertools.islice(zip(iter(fw), iter(bw)), 5):
        assert torch.equal(bf.lengths, bb.lengths)
        for xf, xb, n in zip(bf.token_ids.tolist(), bb.token_ids.tolist(), bf.lengths.tolist()):
            assert xb[0] == 2 and xb[1:n] == xf[1:n][::-1]


def test_backward_matches_model_reverse_padded(tmp_path):
    """The data-side reversal is the model's reverse_padded on the word ids (shared convention)."""
    from spacy_ldnet.lm.model import reverse_padded

    path = _corpus(tmp_path, n=30)
    vocab, _ = build_vocab([path])
    fw = BatchStream([path], vocab, batch_size=4, buffer_size=8, direction="forward")
    bw = BatchStream([path], vocab, batch_size=4, buffer_size=8, direction="backward")
    bf, bb = next(iter(fw)), next(iter(bw))
    words = bf.token_ids[:, 1:]  # drop <s>; padding stays at the right
    rev = reverse_padded(words, bf.lengths - 1)
    assert torch.equal(bb.token_ids[:, 1:], rev)
    assert torch.equal(bb.token_ids[:, 0], bf.token_ids[:, 0])


def test_long_sentences_are_split(tmp_path):
    path = _write(tmp_path / "long.txt", [" ".join(["x"] * 25)])
    vocab, _ = build_vocab([path])
    s = BatchStream([path], vocab, batch_size=8, max_len=10)
    b = next(iter(s))
    assert sorted(b.lengths.tolist()) == [6, 11, 11]


def test_too_few_sentences_for_ranks(tmp_path):
    path = _write(tmp_path / "one.txt", ["a b c"])
    vocab, _ = build_vocab([path])
    with pytest.raises(LMDataError, match="no sentences"):
        next(iter(BatchStream([path], vocab, rank=1, world_size=2)))


def test_eval_batches_capped_and_deterministic(tmp_path):
    path = _corpus(tmp_path, n=101)
    vocab, _ = build_vocab([path])
    full = list(iter_eval_batches(path, vocab, batch_size=8))
    assert sum(b.n_tokens for b in full) == sum(len(s) + 1 for s in iter_sentences([path]))
    capped = list(iter_eval_batches(path, vocab, batch_size=8, max_tokens=50))
    n = sum(b.n_tokens for b in capped)
    assert 50 <= n < 50 + 12
    again = list(iter_eval_batches(path, vocab, batch_size=8, max_tokens=50))
    assert all(torch.equal(x.token_ids, y.token_ids) for x, y in zip(capped, again))


def test_buffers_covering_counts_targets_per_buffer(tmp_path):
    from spacy_ldnet.lm.data import LMDataError, buffers_covering

    corpus = tmp_path / "c.txt"
    # 10 sentences of 3 tokens: 4 targets each (3 tokens + end of sentence)
    corpus.write_text("\n".join(["a b c"] * 10) + "\n", encoding="utf-8")
    # buffers of 4 sentences hold 16 targets: 1 target -> buffer 0 was read -> start at 1
    assert buffers_covering([corpus], 1, buffer_size=4) == 1
    assert buffers_covering([corpus], 16, buffer_size=4) == 1
    assert buffers_covering([corpus], 17, buffer_size=4) == 2
    assert buffers_covering([corpus], 40, buffer_size=4) == 3  # the last, partial buffer
    with pytest.raises(LMDataError, match="second epoch"):
        buffers_covering([corpus], 41, buffer_size=4)
