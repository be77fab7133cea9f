"""Corpus index headers are protected and validated: an edited index.json is refused (exit 2,
one line, no traceback), values are checked against their types and the arrays even in
headers written before the checksum, and a shard copied over another is refused."""

import json
import shutil

import numpy as np
import pytest
from helpers import brute_count

import features
from memtax.cli import main

DOCS = [np.random.default_rng(i).integers(0, 50, size=40) for i in range(6)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    features.CorpusIndex.build(DOCS, root / "single", progress=False)
    features.CorpusIndex.build(DOCS, root / "sharded", shard_tokens=100, progress=False)
    return root


def _edited(src, dst, edit, *, keep_checksum=False):
    shutil.copytree(src, dst)
    header = json.loads((dst / "index.json").read_text())
    edit(header)
    if not keep_checksum:
        header.pop("checksum", None)  # as written before headers carried one
    (dst / "index.json").write_text(json.dumps(header))
    return dst


def _stats_fails(capsys, folder, *needles):
    assert main(["index", "stats", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_an_edited_header_is_refused(built, tmp_path, capsys):
    folder = _edited(built / "single", tmp_path / "e",
                     lambda h: h["meta"].__setitem__("vocab_size", 1000), keep_checksum=True)
    _stats_fails(capsys, folder, "was edited after the index was built")
    assert main(["index", "stats", str(built / "single")]) == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == 50


@pytest.mark.parametrize("edit, needles", [
    (lambda h: h["meta"].__setitem__("vocab_size", 3),
     ["meta.max_token is 49, expected below meta.vocab_size = 3"]),
    (lambda h: (h["meta"].__setitem__("vocab_size", 3), h["meta"].pop("max_token")),
     ["header says vocab_size = 3, but the corpus holds token id 49"]),
    (lambda h: h["meta"].__setitem__("vocab_size", "many"), ["meta.vocab_size is 'many'"]),
    (lambda h: h["meta"].__setitem__("token_dtype", "foo"), ["meta.token_dtype is 'foo'",
                                                             "'<u2' or '<u4'"]),
    (lambda h: h.__setitem__("meta", [1]), ["meta is [1], expected an object"]),
    (lambda h: h.__setitem__("arrays", None), ["arrays is None"]),
    (lambda h: h["meta"].__setitem__("n_tokens", 5), ["meta.n_tokens is 5, expected 240"]),
    (lambda h: h["arrays"]["sa"].__setitem__("file", "../sa.bin"),
     ["arrays.sa.file is '../sa.bin'"]),
    (lambda h: h["meta"].__setitem__("max_token", 20), ["max_token = 20, its arrays hold 49"]),
])
def test_header_values_are_validated(built, tmp_path, capsys, edit, needles):
    folder = _edited(built / "single", tmp_path / "e", edit)
    _stats_fails(capsys, folder, *needles)


def test_a_shard_copied_over_another_is_refused(built, tmp_path, capsys):
    idx = features.CorpusIndex.open(built / "sharded")
    assert len(idx.shards) == 3
    q = DOCS[0][:3]
    assert idx.count(q[None])[0] == brute_count(DOCS, q)
    swapped = tmp_path / "swapped"
    shutil.copytree(built / "sharded", swapped)
    shutil.rmtree(swapped / "shard-00000")
    shutil.copytree(swapped / "shard-00001", swapped / "shard-00000")
    _stats_fails(capsys, swapped, "shard-00000", "is not the one the index was built with")
    with pytest.raises(ValueError, match="is not the one the index was built with"):
        features.CorpusIndex.open(swapped)


def test_sharded_header_names_must_stay_inside(built, tmp_path, capsys):
    folder = _edited(built / "sharded", tmp_path / "e",
                     lambda h: h.__setitem__("shards", ["../x"]))
    _stats_fails(capsys, folder, "shards is ['../x']", "shard folder names")
