"""memtax.bench runs on a CPU with a tiny shape: the methods' labels against HF generate, the
report (JSON + markdown), skipping what does not fit, out-of-memory handling, the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models import wrap_model
from memtax import bench, cli
from memtax.bench import Context, Shape
from memtax.bench import run as bench_run
from memtax.testing import build_model, make_samples

TINY = Shape("tiny", layers=2, hidden=64, heads=4, vocab=301, max_positions=64)
P, C = 6, 6


def _oracle(model, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """HF greedy generate with EOS forbidden for C tokens (min_new_tokens), all rows at once
    (equal-length prompts: no padding)."""
    eos = model.config.eos_token_id
    prompt = torch.from_numpy(tokens[:, :P])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=C, min_new_tokens=C, pad_token_id=eos)
    greedy = out[:, P:].numpy()
    truth = tokens[:, P:]
    eq = greedy == truth
    match_len = np.array([C if r.all() else int(np.argmin(r)) for r in eq])
    return {"exact_match": match_len == C, "match_len": match_len, "gen_score": eq.mean(1)}


@pytest.fixture(scope="module")
def model():
    return build_model(TINY, torch.float32, torch.device("cpu"), seed=1)


@pytest.fixture(scope="module")
def samples(model):
    return make_samples(model, 12, prefix_len=P, cont_len=C, seed=2, memorized_fraction=0.25)


def test_methods_agree_with_hf_generate(model, samples):
    want = _oracle(model, samples)
    # the samples hold planted memorized rows and rows diverging after a few tokens
    assert want["exact_match"].sum() >= 3
    assert ((want["match_len"] > 0) & (want["match_len"] < C)).any()
    ctx = Context(model, wrap_model(model), P, C, model.config.eos_token_id)
    for name, method in bench.METHODS.items():
        got = method.run(ctx, samples, 5)  # 5 does not divide 12: a ragged last batch
        np.testing.assert_array_equal(got["exact_match"], want["exact_match"], err_msg=name)
        np.testing.assert_array_equal(got["match_len"], want["match_len"], err_msg=name)
        if "gen_score" in got:
            np.testing.assert_allclose(got["gen_score"], want["gen_score"], err_msg=name)
        elif name != "hf_forward" and name != "memtax_exact":
            pytest.fail(f"{name} computes no gen_score")


@pytest.fixture(scope="module")
def report():
    return bench.run_bench([TINY], batch_sizes=[6, 12], dtype="fp32", device="cpu", n_samples=12,
                           prefix_len=P, cont_len=C, repeats=2, memorized_fraction=0.25,
                           progress=False, peak_tflops=2.0, seed=1)


def test_report_rows_and_arithmetic(report):
    rows = report["results"]
    assert report["skipped"] == []
    got = sorted((r["method"], r["batch"]) for r in rows)
    want = sorted([(m, b) for m in bench.METHODS if m != bench.RECIPE for b in (6, 12)]
                  + [(bench.RECIPE, 12)])
    assert got == want
    for r in rows:
        n, sec = r["n_samples"], r["seconds"]
        assert n == 12 and r["repeats"] >= 1 and sec == pytest.approx(np.median(r["times"]))
        assert r["samples_per_s"] == pytest.approx(n / sec)
        assert r["tokens_per_s"] == pytest.approx(n * (P + C) / sec)
        if r["method"] != "memtax_generate":
            assert r["flops"] == bench.method_flops(r["method"], TINY, P, C, n_samples=n)
        assert r["tflops"] == pytest.approx(r["flops"] / sec / 1e12)
        assert r["mfu"] == pytest.approx(r["tflops"] / 2.0)
        assert r["gpu_hours_pile"] == pytest.approx(146_432_000 / r["samples_per_s"] / 3600)
        assert r["peak_mem"] is None  # CPU: no allocator statistics
        assert r["memorized"] >= 3
        if r["method"] != "memtax_exact":
            assert r["agree_exact"] == 1.0
        if r["method"] in ("memtax_generate", "hf_generate", "hf_generate_nocache"):
            assert r["agree_gen"] == 1.0
    # generate mode decodes on top of the exact pass: more FLOPs, never fewer
    gen = next(r for r in rows if r["method"] == "memtax_generate")
    assert gen["flops"] > bench.method_flops("memtax_exact", TINY, P, C, n_samples=12)


def test_summary_speedups_and_projection(report):
    rows = report["results"]

    def best(m):
        return max(r["samples_per_s"] for r in rows if r["method"] == m)

    for s in report["summary"]:
        assert s["samples_per_s"] == best(s["method"])
        for base, ratio in s["speedup"].items():
            assert ratio == pytest.approx(best(s["method"]) / best(base))
        assert set(s["speedup"]) == set(bench.BASELINES) - {s["method"]}
        assert s["gpu_hours_pile"] == pytest.approx(bench.PILE_SEQUENCES / s["samples_per_s"] / 3600)
    assert all(t["status"] == "not measured" for t in report["targets"])


def test_write_report_json_and_markdown(report, tmp_path):
    js, md = bench.write_report(report, tmp_path / "out")
    data = json.loads(js.read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    import transformers
    import triton

    env = data["env"]
    assert env["commit"] == (head or None)
    assert (env["torch"], env["transformers"], env["triton"]) == (
        torch.__version__, transformers.__version__, triton.__version__)
    assert env["gpu"] is None and env["device"] == "cpu"
    assert len(data["results"]) == len(report["results"])
    assert data["config"]["shapes"] == ["tiny"]
    text = md.read_text()
    table = [ln for ln in text.splitlines() if ln.startswith("| tiny |")]
    assert len(table) == len(report["results"]) + len(report["summary"])
    assert "146,432,000" in text and "| memtax_exact | fp32 | 6 |" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([js.name, md.name])
    assert bench.to_markdown(report) == text


def test_skip_before_building_when_nothing_fits(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a shape that does not fit must not be built")

    monkeypatch.setattr(bench_run, "build_model", boom)
    rep = bench.run_bench(["12b"], batch_sizes=[1], dtype="fp32", device="cpu",
                          progress=False, memory_limit=24 * bench.GiB)
    assert rep["results"] == []
    assert len(rep["skipped"]) == len(bench.METHODS)
    for s in rep["skipped"]:
        assert s["skipped"].startswith("estimated ") and "GiB available" in s["skipped"]
        assert s["est_mem"] > 24 * bench.GiB


def test_skip_only_the_batches_that_do_not_fit():
    snapshots = []
    limit = bench.estimate_memory(TINY, "memtax_exact", 2, torch.float32, P, C) + 1
    rep = bench.run_bench([TINY], batch_sizes=[2, 4096], dtype="fp32", device="cpu",
                          methods=["memtax_exact"], n_samples=4, prefix_len=P, cont_len=C,
                          repeats=1, memorized_fraction=0.0, progress=False, memory_limit=limit,
                          on_shape=snapshots.append)
    assert [(r["method"], r["batch"]) for r in rep["results"]] == [("memtax_exact", 2)]
    assert rep["complete"] and len(snapshots) == 1 and not snapshots[0]["complete"]
    assert snapshots[0]["results"] == rep["results"]
    assert "PARTIAL" in bench.to_markdown(snapshots[0]) and "PARTIAL" not in bench.to_markdown(rep)
    assert [(s["method"], s["batch"]) for s in rep["skipped"]] == [("memtax_exact", 4096)]
    assert "estimated" in bench.to_markdown(rep)


def test_out_of_memory_and_unavailable_methods_are_recorded(monkeypatch):
    def oom(ctx, tokens, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    def unavailable(ctx, tokens, batch):
        raise ValueError("mode='generate' (free-running Pythia score) is not available yet")

    methods = dict(bench.METHODS)
    methods["hf_forward"] = bench.Method("hf_forward", oom, "raises OOM")
    methods["memtax_generate"] = bench.Method("memtax_generate", unavailable, "unwired")
    monkeypatch.setattr(bench_run, "METHODS", methods)
    rep = bench.run_bench([TINY], batch_sizes=[4], dtype="fp32", device="cpu",
                          methods=["memtax_exact", "hf_forward", "memtax_generate"], n_samples=4,
                          prefix_len=P, cont_len=C, repeats=1, memorized_fraction=0.0,
                          progress=False)
    assert [r["method"] for r in rep["results"]] == ["memtax_exact"]
    reasons = {s["method"]: s["skipped"] for s in rep["skipped"]}
    assert reasons["hf_forward"].startswith("out of memory")
    assert reasons["memtax_generate"].startswith("not available")


def test_other_errors_are_not_swallowed(monkeypatch):
    def broken(ctx, tokens, batch):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(bench_run, "METHODS", {
        **bench.METHODS, "hf_forward": bench.Method("hf_forward", broken, "")})
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench.run_bench([TINY], batch_sizes=[4], dtype="fp32", device="cpu",
                        methods=["hf_forward"], n_samples=4, prefix_len=P, cont_len=C,
                        repeats=1, memorized_fraction=0.0, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"methods": ["beam_search"]}, "unknown method 'beam_search'"),
    ({"dtype": "int8"}, "dtype must be one of"),
    ({"batch_sizes": [0]}, "batch sizes must be positive"),
    ({"peak_tflops": -1.0}, "peak_tflops must be positive"),
])
def test_bad_arguments(kwargs, match):
    args = {"batch_sizes": [4], "dtype": "fp32", "device": "cpu", "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        bench.run_bench([TINY], **args)
    with pytest.raises(ValueError, match="unknown shape '13b'"):
        bench.run_bench(["13b"], batch_sizes=[4], device="cpu", progress=False)


def _target_report(rows):
    rows = [{"shape": shape, "method": method, "batch": 1024, "samples_per_s": sps, "mfu": mfu,
             "head_mem": head} for (shape, method), (sps, mfu, head) in rows]
    return {"results": rows, "config": {"device": "cuda", "dtype": "bf16"}}


def test_targets_met_missed_and_unmeasured():
    rep = _target_report([
        (("160m", "memtax_exact"), (40000.0, 0.4, 1 << 20)),
        (("160m", "hf_generate_nocache"), (1000.0, 0.1, None)),
        (("160m", "hf_forward"), (32000.0, 0.3, 10 << 20)),
        (("12b", "memtax_exact"), (300.0, 0.45, None)),
    ])
    got = {t["target"]: t for t in bench.evaluate_targets(rep)}
    assert got["160m exact samples/s"]["status"] == "met"
    assert got["160m exact vs uncached recipe"]["value"] == pytest.approx(40.0)
    assert got["160m exact vs uncached recipe"]["status"] == "met"
    assert got["12b exact MFU"]["status"] == "missed"
    assert got["160m exact vs hf_forward"]["value"] == pytest.approx(1.25)
    assert got["160m exact vs hf_forward"]["status"] == "missed"
    assert got["160m head memory hf_forward / exact"]["value"] == pytest.approx(10.0)
    assert got["160m head memory hf_forward / exact"]["status"] == "met"
    assert got["410m exact vs hf_forward"]["status"] == "not measured"
    assert "note" not in got["12b exact MFU"]
    # the same numbers from a CPU or fp32 run say nothing about the H100/H200 bf16 targets
    rep["config"] = {"device": "cpu", "dtype": "fp32"}
    cpu = bench.evaluate_targets(rep)
    assert {t["status"] for t in cpu} == {"n/a", "not measured"}
    assert all("H100/H200" in t["note"] for t in cpu)


def test_cli_with_a_saved_model(tmp_path, capsys, model):
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    rc = cli.main(["bench", "--model", str(folder), "--device", "cpu", "--batch-sizes", "4",
                   "--samples", "4", "--methods", "memtax_exact,hf_forward", "--prefix-len",
                   str(P), "--cont-len", str(C), "--out", str(tmp_path / "res"), "--quiet",
                   "--repeats", "1", "--peak-tflops", "1.5"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "| memtax_exact | fp32 | 4 |" in out.out and "| hf_forward | fp32 | 4 |" in out.out
    data = json.loads(next((tmp_path / "res").glob("bench-cpu-*.json")).read_text())
    assert data["config"]["model"] == str(folder) and data["config"]["peak_tflops"] == 1.5
    assert [r["method"] for r in data["results"]] == ["memtax_exact", "hf_forward"]
    assert data["results"][1]["agree_exact"] == 1.0
    # the shape was read off the model: FLOPs from its own Linear weights
    assert data["results"][0]["flops"] == bench.method_flops("memtax_exact", TINY, P, C,
                                                             n_samples=4)


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--shapes", "13b", "--device", "cpu"], "unknown shape '13b'"),
    (["bench", "--methods", "beam", "--device", "cpu", "--shapes", "70m"], "unknown method"),
    (["bench", "--device", "cuda:0"], "CUDA is not available"),
    (["bench", "--out", __file__], "is a file"),
])
def test_cli_bad_input_exits_2(argv, msg, capsys):
    if msg.startswith("CUDA") and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    assert cli.main(argv) == 2
    assert msg in capsys.readouterr().err


def test_cli_rejects_bad_batch_sizes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--batch-sizes", "0,4"])
    assert exc.value.code == 2
    assert "positive integers" in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_quick_mode_under_two_minutes(tmp_path, capsys):
    t0 = time.perf_counter()
    assert cli.main(["bench", "--device", "cpu", "--quick", "--quiet", "--out",
                     str(tmp_path)]) == 0
    assert time.perf_counter() - t0 < 120
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert {r["method"] for r in data["results"]} == set(bench.METHODS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_memory_columns_and_head_memory():
    # a 50k vocabulary on a small backbone: the head's logits dominate what HF keeps
    shape = Shape("wide-head", layers=2, hidden=128, heads=4, vocab=50304, max_positions=128)
    rep = bench.run_bench([shape], batch_sizes=[64], dtype="bf16", device="cuda", n_samples=128,
                          methods=["memtax_exact", "hf_forward"], repeats=1, progress=False)
    rows = {r["method"]: r for r in rep["results"]}
    assert set(rows) == {"memtax_exact", "hf_forward"}
    logits = 64 * 63 * 50304 * 2  # (B, L-1, V) bf16 logits that hf_forward materialises
    assert rows["hf_forward"]["head_mem"] >= logits
    assert rows["memtax_exact"]["head_mem"] * 5 <= rows["hf_forward"]["head_mem"]
    assert all(r["peak_mem"] >= r["extra_mem"] > 0 for r in rows.values())
    assert rep["env"]["gpu"] and rep["env"]["driver"] is not None
