"""`memtax score`: a real run from a saved model folder, and bad input (ids outside the
vocabulary, short or empty or float rows, damaged .bin/.idx files, a missing model or revision)
giving a clear message, exit status 2 and no output folder."""

import re

import numpy as np
import pytest
from helpers import assert_same_scores, save_tiny

import engine
from engine.indexed_dataset import write_indexed_dataset
from engine.output import read_scores
from memtax.cli import main
from memtax.testing import tiny_model

V = 301


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = tiny_model("gpt_neox", seed=11)
    save_tiny(model, root / "model")
    save_tiny(model, root / "pythia" / "step143000")
    rows = np.random.default_rng(0).integers(1, V, size=(14, 10))
    np.save(root / "rows.npy", rows)
    write_indexed_dataset(root / "pile", rows, dtype=np.uint16)
    return root, model, rows


def test_score_command_end_to_end(setup, capsys):
    root, model, rows = setup
    out = root / "out"
    code = main(["score", "--model", f"{root / 'pythia'}@step143000", "--data", str(root / "pile"),
                 "--out", str(out), "--prefix-len", "5", "--cont-len", "5", "--batch-size", "4",
                 "--range", "2:12", "--quiet"])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("memtax score: 10 samples, 0 memorized (0.00%)") and "samples/s" in line
    table = read_scores(out)
    np.testing.assert_array_equal(table.column("sample_id").to_numpy(), np.arange(2, 12))
    ref = engine.score(model, engine.open_samples(rows[2:12], prefix_len=5, cont_len=5,
                                                  sample_ids=np.arange(2, 12)),
                       prefix_len=5, cont_len=5, batch_size=4, progress=False)
    assert_same_scores(table, ref)
    assert table.schema.metadata[b"revision"] == b"step143000"
    # rerun: everything resumed
    assert main(["score", "--model", f"{root / 'pythia'}@step143000", "--data",
                 str(root / "pile"), "--out", str(out), "--prefix-len", "5", "--cont-len", "5",
                 "--range", "2:12", "--quiet"]) == 0
    assert "10 resumed" in capsys.readouterr().out


def _vocab(t):
    a = np.random.default_rng(0).integers(1, V, size=(6, 10))
    a[4, 7] = V + 1
    np.save(t / "d.npy", a)
    return t / "d.npy", [], rf"token id {V + 1} .*outside the model's vocabulary"


def _short(t):
    np.save(t / "d.npy", np.ones((6, 7), dtype=np.int64))
    return t / "d.npy", [], r"rows have 7 tokens, fewer than prefix_len \+ cont_len = 10"


def _empty(t):
    np.save(t / "d.npy", np.ones((0, 10), dtype=np.int64))
    return t / "d.npy", [], "is empty"


def _float(t):
    np.save(t / "d.npy", np.ones((6, 10)) * 0.5)
    return t / "d.npy", [], "integer token ids"


def _truncated_idx(t):
    write_indexed_dataset(t / "p", np.ones((6, 10), int))
    data = (t / "p.idx").read_bytes()
    (t / "p.idx").write_bytes(data[:-9])
    return t / "p", [], r"p\.idx.* is truncated"


def _foreign_idx(t):
    write_indexed_dataset(t / "p", np.ones((6, 10), int))
    (t / "p.idx").write_bytes(b"\x80\x02}q\x00(X\x05\x00\x00\x00pickle" * 4)
    return t / "p", [], "not an MMIDIDX index"


def _truncated_bin(t):
    write_indexed_dataset(t / "p", np.ones((6, 10), int))
    (t / "p.bin").write_bytes((t / "p.bin").read_bytes()[:50])
    return t / "p.bin", [], r"p\.bin.* is truncated"


def _missing_model(t):
    np.save(t / "d.npy", np.ones((6, 10), dtype=np.int64))
    return t / "d.npy", ["--model", str(t / "no-such-model")], "not found"


def _missing_revision(t):
    np.save(t / "d.npy", np.ones((6, 10), dtype=np.int64))
    return t / "d.npy", ["--model", "PYTHIA@step7"], r"revision 'step7'.*step143000"


CASES = [_vocab, _short, _empty, _float, _truncated_idx, _foreign_idx, _truncated_bin,
         _missing_model, _missing_revision]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[1:] for c in CASES])
def test_bad_input_exits_2_without_output(setup, tmp_path, capsys, case):
    root, _, _ = setup
    data, extra, message = case(tmp_path)
    extra = [a.replace("PYTHIA", str(root / "pythia")) for a in extra]
    args = ["score", "--model", str(root / "model"), "--data", str(data), "--out",
            str(tmp_path / "out"), "--prefix-len", "5", "--cont-len", "5", "--quiet", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("memtax score: error: ")
    assert re.search(message, err), err  # each case returns (data, extra args, message)
    assert not (tmp_path / "out").exists()


def test_other_runs_folder_is_refused_and_kept(setup, tmp_path, capsys):
    root, _, _ = setup
    base = ["score", "--model", str(root / "model"), "--data", str(root / "rows.npy"),
            "--out", str(tmp_path / "out"), "--prefix-len", "5", "--quiet"]
    assert main(base + ["--cont-len", "5"]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert main(base + ["--cont-len", "4"]) == 2
    assert "holds shards of another run (cont_len 5 != 4" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def _score_args(argv):
    import argparse

    from memtax.commands import score as score_cmd

    parser = argparse.ArgumentParser()
    score_cmd.register(parser.add_subparsers())
    return parser.parse_args(["score", "--model", "m", "--data", "d", "--out", "o", *argv])


def test_decode_flags_and_environment_map_onto_decode_options():
    """Flags first, then MEMTAX_DECODE_SCREEN / MEMTAX_DECODE_GRAPHS, then the defaults."""
    from engine.options import DecodeOptions
    from memtax.commands.score import decode_options

    assert decode_options(_score_args([]), {}) == DecodeOptions()
    env = {"MEMTAX_DECODE_SCREEN": "off", "MEMTAX_DECODE_GRAPHS": "1"}
    assert decode_options(_score_args([]), env) == DecodeOptions(screened_head="off",
                                                                  cuda_graphs=True)
    flags = ["--decoder", "dynamic", "--screened-head", "on", "--no-cuda-graphs"]
    assert decode_options(_score_args(flags), env) == DecodeOptions(
        decoder="dynamic", screened_head="on", cuda_graphs=False)
    assert decode_options(_score_args(["--cuda-graphs"]), {}).cuda_graphs is True
    with pytest.raises(ValueError, match=r"screened_head .*'bogus'.*MEMTAX_DECODE_SCREEN"):
        decode_options(_score_args([]), {"MEMTAX_DECODE_SCREEN": "bogus"})


def test_generate_mode_with_decode_flags(tmp_path, monkeypatch):
    """`--mode generate --decoder dynamic --screened-head off` writes the default run's table,
    both HF generate's greedy tokens; a bad MEMTAX_DECODE_SCREEN is a clear error (exit 2, no
    output)."""
    from gen_oracle import build_rows, varied_model  # tie-free weights: an exact comparison

    model = varied_model("gpt_neox", seed=12)
    save_tiny(model, tmp_path / "model")
    rows, want, _ = build_rows(model, prefix_len=4, cont_len=6, n_memorized=2, n_random=3,
                               seed=61)
    np.save(tmp_path / "rows.npy", rows.numpy())
    base = ["score", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "rows.npy"),
            "--prefix-len", "4", "--cont-len", "6", "--mode", "generate", "--keep-tokens",
            "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--decoder", "dynamic",
                 "--screened-head", "off"]) == 0
    a, b = read_scores(tmp_path / "a"), read_scores(tmp_path / "b")
    assert a.num_rows == len(rows) and a.equals(b)
    np.testing.assert_array_equal(np.stack(a["gen_tokens"].to_numpy(zero_copy_only=False)),
                                  want.numpy())
    monkeypatch.setenv("MEMTAX_DECODE_SCREEN", "bogus")
    assert main([*base, "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()
