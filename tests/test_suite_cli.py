"""`memtax suite build` / `memtax suite info` and the corpus readers behind them."""

import json

import numpy as np
import pytest

from memtax import suite
from memtax.cli import main
from memtax.suite.corpus import load_documents


def _write_corpus(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    docs = ["".join(rng.choice(list("abcdefgh "), 200)) for _ in range(6)]
    (folder / "a.txt").write_text(docs[0])
    (folder / "sub").mkdir()
    (folder / "sub" / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n"
                                                     for d in docs[1:]))
    return docs


def test_corpus_readers(tmp_path):
    docs = _write_corpus(tmp_path / "c")
    assert load_documents(tmp_path / "c") == docs          # a.txt, then sub/b.jsonl's lines
    assert load_documents(tmp_path / "c" / "sub" / "b.jsonl") == docs[1:]
    assert load_documents([tmp_path / "c" / "a.txt"]) == docs[:1]
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(ValueError, match="line 1.*'text'"):
        load_documents(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        load_documents(tmp_path / "missing")


def test_cli_build_and_info(tmp_path, capsys, one_torch_thread):
    docs = _write_corpus(tmp_path / "c")
    out = tmp_path / "s"
    args = ["suite", "build", "--corpus", str(tmp_path / "c"), "--out", str(out),
            "--sizes", "m=L1-H16-A2", "--vocab-size", "260", "--seq-len", "33",
            "--batch-size", "4", "--epochs", "1", "--checkpoints", "2", "--quiet"]
    assert main(args) == 0
    built = json.loads(capsys.readouterr().out)
    s = suite.open_suite(out)
    assert built["models"]["m"]["steps"] == s.models["m"] and s.complete
    assert s.manifest["identity"]["corpus_sha256"] == suite.build_suite(
        docs, out, config=s.config, progress=False).manifest["identity"]["corpus_sha256"]
    assert main(["suite", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["stream"] == s.manifest["stream"]


@pytest.mark.parametrize("extra, match", [
    (["--sizes", "L2-H33"], "neither a preset"),
    (["--sizes", "tiny", "--epochs", "0"], "epochs must be"),
])
def test_cli_bad_values_exit_2(tmp_path, capsys, extra, match):
    _write_corpus(tmp_path / "c")
    code = main(["suite", "build", "--corpus", str(tmp_path / "c"), "--out",
                 str(tmp_path / "s"), "--quiet", *extra])
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
