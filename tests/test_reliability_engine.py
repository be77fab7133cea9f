"""No silent wrong results from the engine: a resumed run is the same run by content (other
data or weights at the same path are refused, naming what changed; the same file by another
spelling resumes), score shards are checked, a checkpoint with missing tensors is refused,
`engine.score` never changes the caller's model, and the crashes and unclear errors users met
are clear one-line errors (exit 2, no traceback, nothing partial)."""

import copy
import json
import os
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import safetensors.torch as st
import torch
from helpers import assert_same_scores, save_tiny

import engine
from engine.output import read_scores
from memtax.cli import main
from memtax.testing import tiny_model

V = 301
P = C = 6


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt_neox", seed=5)


def _score(model, data, out, **kw):
    calls = []
    table = engine.score(model, data, prefix_len=P, cont_len=C, out=out, progress=False,
                         on_batch=calls.append, **kw)
    return table, sum(calls)


def _rows(seed, n=20):
    return np.random.default_rng(seed).integers(1, V, size=(n, P + C))


def _folder_bytes(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


# ------------------------------------------------------------------------ run identity by content


def test_other_data_at_the_same_path_is_refused(tmp_path, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    out = tmp_path / "run"
    _score(model, tmp_path / "rows.npy", out, shard_size=5)
    np.save(tmp_path / "rows.npy", _rows(1))  # replaced in place, same shape
    before = _folder_bytes(out)
    with pytest.raises(ValueError, match=r"another run \(samples_sha256 .*: the samples differ"):
        _score(model, tmp_path / "rows.npy", out, shard_size=5)
    assert _folder_bytes(out) == before


def test_changed_rows_of_a_kept_shard_are_refused(tmp_path, model):
    """Rows outside the 64 fingerprinted ones: the kept shard's own checksum catches them."""
    rows = _rows(0, n=200)
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "run"

    seen = []

    def stop_after_first_shard(n):
        seen.append(n)
        if sum(seen) >= 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.score(model, tmp_path / "rows.npy", prefix_len=P, cont_len=C, out=out,
                     shard_size=50, batch_size=20, progress=False,
                     on_batch=stop_after_first_shard)
    assert (out / "part-000000.parquet").is_file()
    checked = json.loads(pq.read_schema(out / "part-000000.parquet").metadata[
        b"samples_check_ids"])
    row = next(i for i in range(1, 50) if i not in checked)
    rows[row, 3] = rows[row, 3] % (V - 1) + 1
    np.save(tmp_path / "rows.npy", rows)
    with pytest.raises(ValueError, match=r"samples changed since .*part-000000.parquet.*rows 0:50"):
        _score(model, tmp_path / "rows.npy", out, shard_size=50)


def test_other_weights_in_the_same_folder_are_refused(tmp_path, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    save_tiny(model, tmp_path / "m")
    out = tmp_path / "run"
    _score(str(tmp_path / "m"), tmp_path / "rows.npy", out)
    save_tiny(tiny_model("gpt_neox", seed=6), tmp_path / "m")  # re-saved, other weights
    with pytest.raises(ValueError, match=r"another run \(model_sha256 .*: the model's weights "
                                         r"differ"):
        _score(str(tmp_path / "m"), tmp_path / "rows.npy", out)


def test_the_same_files_by_another_spelling_resume(tmp_path, model, monkeypatch):
    np.save(tmp_path / "rows.npy", _rows(0))
    save_tiny(model, tmp_path / "m")
    os.symlink(tmp_path / "rows.npy", tmp_path / "link.npy")
    first, scored = _score(str(tmp_path / "m"), str(tmp_path / "rows.npy"), tmp_path / "run")
    assert scored == 20
    monkeypatch.chdir(tmp_path)
    for model_spec, data in (("m", "./rows.npy"), ("./m/", "link.npy"),
                             (str(tmp_path / "m"), "../" + tmp_path.name + "/rows.npy")):
        again, scored = _score(model_spec, data, "run")
        assert scored == 0, (model_spec, data)
        assert_same_scores(again, first)
    rec = json.loads(first.schema.metadata[b"sample_source"])
    assert rec == {"kind": "npy", "path": str((tmp_path / "rows.npy").resolve())}


def test_an_edited_shard_is_refused_on_resume_and_read(tmp_path, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    out = tmp_path / "run"
    _score(model, tmp_path / "rows.npy", out, shard_size=5)
    man = json.loads((out / "manifest.json").read_text())
    assert all(len(s["sha256"]) == 64 and len(s["samples_sha256"]) == 64 for s in man["shards"])
    shard = pq.read_table(out / "part-000001.parquet")
    cols = {n: shard.column(n).to_numpy() for n in shard.column_names}
    cols["exact_match"] = np.ones(5, bool)  # a hand edit: every row memorized
    edited = shard.from_pydict(cols, schema=shard.schema)
    pq.write_table(edited, out / "part-000001.parquet")
    with pytest.raises(ValueError, match=r"part-000001.parquet' was changed after it was written"):
        _score(model, tmp_path / "rows.npy", out, shard_size=5)
    with pytest.raises(ValueError, match=r"part-000001.parquet' was changed after it was written"):
        read_scores(out)


def test_an_older_folder_is_read_but_not_resumed(tmp_path, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    out = tmp_path / "run"
    table, _ = _score(model, tmp_path / "rows.npy", out, shard_size=5)
    man = json.loads((out / "manifest.json").read_text())
    man["version"] = 1
    for key in ("model_sha256", "samples_sha256", "samples_check_ids", "sample_source"):
        man["run"].pop(key, None)
    for s in man["shards"]:
        s.pop("sha256"), s.pop("samples_sha256")
    (out / "manifest.json").write_text(json.dumps(man))
    assert_same_scores(read_scores(out), table)
    with pytest.raises(ValueError, match=r"older memtax \(manifest version 1.*cannot be resumed"):
        _score(model, tmp_path / "rows.npy", out, shard_size=5)


# ------------------------------------------------------------------------ missing tensors


def _without_tensors(model, folder):
    save_tiny(model, folder)
    sd = st.load_file(folder / "model.safetensors")
    mlp = "gpt_neox.layers.1.mlp.dense_h_to_4h.weight"
    del sd["embed_out.weight"], sd[mlp]
    st.save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    return mlp


def test_checkpoint_with_missing_tensors_is_refused(tmp_path, model):
    mlp = _without_tensors(model, tmp_path / "m")
    rows = _rows(0)
    with pytest.raises(ValueError, match=rf"leave parameters uninitialised \(missing: .*{mlp}"):
        engine.score(str(tmp_path / "m"), rows, prefix_len=P, cont_len=C, progress=False)
    with pytest.raises(ValueError, match="allow_missing_weights=True"):
        engine.load_model(str(tmp_path / "m"))
    table = engine.score(str(tmp_path / "m"), rows, prefix_len=P, cont_len=C, progress=False,
                         allow_missing_weights=True)
    assert table.num_rows == 20


def test_cli_missing_tensors_exit_2_and_allow_flag(tmp_path, model, capsys):
    mlp = _without_tensors(model, tmp_path / "m")
    np.save(tmp_path / "rows.npy", _rows(0))
    args = ["score", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "rows.npy"),
            "--prefix-len", "6", "--cont-len", "6", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert mlp in err and "--allow-missing-weights" in err and "Traceback" not in err
    assert not (tmp_path / "o1").exists()
    assert main(args + ["--out", str(tmp_path / "o2"), "--allow-missing-weights"]) == 0


# ------------------------------------------------------------------------ the caller's model


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_auto_dtype_keeps_a_loaded_bf16_model_and_never_changes_it(model):
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    before = _state(bf16)
    table = engine.score(bf16, _rows(0), prefix_len=P, cont_len=C, progress=False)
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert _same_state(_state(bf16), before)
    assert table.schema.metadata[b"dtype"] == b"bf16"
    # the same through a ScoringModel loaded in bf16 (what the demo passes)
    sm = engine.load_model(bf16)
    assert sm.model is bf16  # no copy when nothing needs casting
    table = engine.score(sm, _rows(0), prefix_len=P, cont_len=C, progress=False)
    assert table.schema.metadata[b"dtype"] == b"bf16" and sm.dtype == torch.bfloat16


def test_a_cast_works_on_a_copy_and_modes_are_restored(model):
    fp32 = copy.deepcopy(model)
    fp32.train()  # scoring needs eval mode; the caller's mode comes back
    before = _state(fp32)
    table = engine.score(fp32, _rows(0), prefix_len=P, cont_len=C, dtype="bf16",
                         progress=False)
    assert table.schema.metadata[b"dtype"] == b"bf16"
    assert next(fp32.parameters()).dtype == torch.float32
    assert _same_state(_state(fp32), before)
    assert fp32.training and all(m.training for m in fp32.modules())
    # the bf16 run equals scoring an explicit bf16 copy (the oracle: a copy cast by hand)
    ref = engine.score(copy.deepcopy(model).to(torch.bfloat16), _rows(0), prefix_len=P,
                       cont_len=C, progress=False)
    assert_same_scores(table, ref)


# ------------------------------------------------------------------------ crashes -> clear errors


def _cli_fails(capsys, args, *needles):
    assert main(args + ["--prefix-len", "6", "--cont-len", "6"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_unwritable_out_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import engine.output
    import engine.scoring

    np.save(tmp_path / "rows.npy", _rows(0))
    ro = tmp_path / "ro"
    ro.mkdir()

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    # root may write anywhere, so the operating system's refusal is simulated at the probe
    monkeypatch.setattr(engine.output.tempfile, "mkstemp", denied)
    monkeypatch.setattr(engine.scoring, "load_model", no_model)
    _cli_fails(capsys, ["score", "--model", "nowhere-model", "--data", str(tmp_path / "rows.npy"),
                        "--out", str(ro / "run"), "--quiet"],
               "is not writable", "Permission denied", str(ro))
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_for_real(tmp_path, capsys, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    save_tiny(model, tmp_path / "m")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    _cli_fails(capsys, ["score", "--model", str(tmp_path / "m"), "--data",
                        str(tmp_path / "rows.npy"), "--out", str(ro), "--quiet"],
               "is not writable")


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_malicious_pickle_checkpoint_is_a_clear_error(tmp_path, capsys, model):
    folder = tmp_path / "m"
    model.config.save_pretrained(folder)
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"embed_out.weight": _Payload()}, f)
    np.save(tmp_path / "rows.npy", _rows(0))
    err = _cli_fails(capsys, ["score", "--model", str(folder), "--data", str(tmp_path / "rows.npy"),
                              "--out", str(tmp_path / "o"), "--quiet"],
                     "holds objects other than tensors", "safetensors", str(folder))
    assert "payload ran" not in err + capsys.readouterr().out
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------ unclear errors


def test_truncated_and_garbage_npy_name_the_file(tmp_path, capsys, model):
    np.save(tmp_path / "good.npy", _rows(0, n=200))
    data = (tmp_path / "good.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.npy").write_bytes(b"\x80\x04not an array at all" * 40)
    save_tiny(model, tmp_path / "m")
    for name, why in (("cut.npy", "shorter than its header says (truncated?)"),
                      ("junk.npy", "not a numpy array file")):
        _cli_fails(capsys, ["score", "--model", str(tmp_path / "m"), "--data",
                            str(tmp_path / name), "--out", str(tmp_path / "o"), "--quiet"],
                   str(tmp_path / name), why)
        assert not (tmp_path / "o").exists()


def test_text_data_with_a_model_folder_without_tokenizer(tmp_path, capsys, model):
    save_tiny(model, tmp_path / "m")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "some words " * 40}) + "\n")
    _cli_fails(capsys, ["score", "--model", str(tmp_path / "m"), "--data",
                        str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "o"), "--quiet"],
               "holds no tokenizer", str(tmp_path / "m"), "--tokenizer")


def test_parquet_with_two_list_columns_names_the_flag(tmp_path, capsys, model):
    import pyarrow as pa

    rows = _rows(0)
    pq.write_table(pa.table({"a": list(rows), "b": list(rows[:, ::-1])}), tmp_path / "d.parquet")
    save_tiny(model, tmp_path / "m")
    args = ["score", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d.parquet"),
            "--prefix-len", "6", "--cont-len", "6", "--quiet"]
    _cli_fails(capsys, args + ["--out", str(tmp_path / "o")], "['a', 'b']", "--column")
    assert main(args + ["--out", str(tmp_path / "o"), "--column", "b"]) == 0
    ref = engine.score(model, rows[:, ::-1].copy(), prefix_len=P, cont_len=C, progress=False)
    assert_same_scores(read_scores(tmp_path / "o"), ref)
    rec = json.loads(read_scores(tmp_path / "o").schema.metadata[b"sample_source"])
    assert rec["column"] == "b" and rec["path"] == str((tmp_path / "d.parquet").resolve())


def test_unreadable_weights_are_named(tmp_path, capsys, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    save_tiny(model, tmp_path / "link")
    (tmp_path / "link" / "model.safetensors").unlink()
    os.symlink(tmp_path / "gone.safetensors", tmp_path / "link" / "model.safetensors")
    save_tiny(model, tmp_path / "junk")
    (tmp_path / "junk" / "model.safetensors").write_bytes(b"\xff" * 64)
    for name, why in (("link", "is a broken link"), ("junk", "corrupt or not safetensors")):
        _cli_fails(capsys, ["score", "--model", str(tmp_path / name), "--data",
                            str(tmp_path / "rows.npy"), "--out", str(tmp_path / "o"), "--quiet"],
                   str(tmp_path / name), why)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_weights_permission(tmp_path, capsys, model):
    np.save(tmp_path / "rows.npy", _rows(0))
    save_tiny(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").chmod(0)
    _cli_fails(capsys, ["score", "--model", str(tmp_path / "m"), "--data",
                        str(tmp_path / "rows.npy"), "--out", str(tmp_path / "o"), "--quiet"],
               "cannot be read", "model.safetensors")


def test_score_finds_the_gpt_neox_tokenizer_offline(tmp_path, capsys, monkeypatch):
    """The named tokenizer ships in a package: `score --tokenizer gpt-neox` works offline, as
    `features --tokenizer gpt-neox` does (one loader); the windows are the tokenizer's."""
    from engine.tokenizers import encode_text, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    big = tiny_model("gpt_neox", seed=1, vocab_size=50304, hidden=16, layers=1)
    save_tiny(big, tmp_path / "m")
    text = "The quick brown fox jumps over the lazy dog. " * 8
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": text}) + "\n")
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d.jsonl"),
                 "--tokenizer", "gpt-neox", "--prefix-len", "6", "--cont-len", "6",
                 "--stride", "10", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    ids = np.array(encode_text(load_tokenizer("gpt-neox"), text))
    n = (len(ids) - 12) // 10 + 1
    table = read_scores(tmp_path / "o")
    ref = engine.score(big, np.stack([ids[10 * k: 10 * k + 12] for k in range(n)]),
                       prefix_len=P, cont_len=C, progress=False)
    assert_same_scores(table, ref)
    rec = json.loads(table.schema.metadata[b"sample_source"])
    assert rec["kind"] == "text" and rec["stride"] == 10 and rec["tokenizer_sha256"]
