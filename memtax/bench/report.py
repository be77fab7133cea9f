"""The `memtax bench` report: per-row agreement, the summary (best batch, speed-ups, the Pile
projection), the H100/H200 targets, and its markdown and JSON files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from engine.output import write_bytes_atomic
from memtax.bench.methods import BASELINES, RECIPE
from memtax.bench.shapes import GiB, Shape, gpu_hours, method_flops
from memtax.jsonio import json_default

__all__ = ["assemble", "result_row", "evaluate_targets", "to_markdown", "write_report"]


def assemble(env: dict, config: dict, results: list[dict], skipped: list[dict], *,
             complete: bool) -> dict:
    """The report dict from the measurements so far (agreement, summary, targets added)."""
    results = [dict(r) for r in results]
    report = {"env": env, "config": config, "complete": complete, "results": results,
              "skipped": list(skipped)}
    _add_agreement(report)
    report["summary"] = _summary(report)
    report["targets"] = evaluate_targets(report)
    return report


def result_row(entry: dict, meas: dict, shape: Shape, p: int, c: int, peak: float | None) -> dict:
    """One measurement as a report row: speeds, FLOPs, MFU, the Pile projection, head memory.
    The row keeps the method's labels under `_labels` until `assemble` compares them."""
    labels = meas.pop("labels")
    n, sec = meas["n_samples"], meas["seconds"]
    flops = method_flops(entry["method"], shape, p, c, match_len=labels.get("match_len"),
                         n_samples=n)
    tflops = flops / sec / 1e12
    row = {**entry, **meas, "samples_per_s": n / sec, "tokens_per_s": n * (p + c) / sec,
           "flops": flops, "tflops": tflops, "mfu": tflops / peak if peak else None,
           "gpu_hours_pile": gpu_hours(n / sec)}
    if row.get("backbone_extra_mem") is not None and row.get("extra_mem") is not None:
        row["head_mem"] = max(row["extra_mem"] - row["backbone_extra_mem"], 0)
    if "batch_used" in labels:
        row["batch_used"] = int(labels.pop("batch_used"))
    row["_labels"] = labels
    return row


def _add_agreement(report: dict) -> None:
    """Per result, the share of rows whose labels equal memtax_exact's (exact_match,
    match_len) and the generating methods' gen_score (same shape and dtype only; rows in
    common). Labels then leave the report (they are per-row arrays)."""
    rows = report["results"]
    for r in rows:
        ref = next((x for x in rows if x["shape"] == r["shape"] and x["dtype"] == r["dtype"]
                    and x["method"] == "memtax_exact"), None)
        gen_ref = next((x for x in rows if x["shape"] == r["shape"] and x["dtype"] == r["dtype"]
                        and "gen_score" in x["_labels"] and x is not r), None)
        lab = r["_labels"]
        if ref is not None and ref is not r:
            k = min(len(lab["exact_match"]), len(ref["_labels"]["exact_match"]))
            same = (lab["exact_match"][:k] == ref["_labels"]["exact_match"][:k]) & (
                lab["match_len"][:k] == ref["_labels"]["match_len"][:k])
            r["agree_exact"] = float(same.mean()) if k else None
        if gen_ref is not None and "gen_score" in lab:
            g = gen_ref["_labels"]["gen_score"]
            k = min(len(lab["gen_score"]), len(g))
            r["agree_gen"] = float(np.isclose(lab["gen_score"][:k], g[:k]).mean()) if k else None
        r["memorized"] = int(np.asarray(lab["exact_match"]).sum())
    for r in rows:
        r.pop("_labels")


def _best(rows: list[dict], shape: str, method: str) -> dict | None:
    cand = [r for r in rows if r["shape"] == shape and r["method"] == method]
    return max(cand, key=lambda r: r["samples_per_s"]) if cand else None


def _summary(report: dict) -> list[dict]:
    """Per shape: the best batch of every method, its speed-ups over every baseline's best,
    and the GPU-hours to score the Pile's 146M training sequences."""
    rows = report["results"]
    out = []
    for shape in report["config"]["shapes"]:
        for method in report["config"]["methods"]:
            best = _best(rows, shape, method)
            if best is None:
                continue
            s = {"shape": shape, "method": method, "batch": best["batch"], "dtype": best["dtype"],
                 "samples_per_s": best["samples_per_s"], "tflops": best["tflops"],
                 "mfu": best["mfu"], "gpu_hours_pile": best["gpu_hours_pile"],
                 "peak_mem": best["peak_mem"], "speedup": {}}
            for base in BASELINES:
                b = _best(rows, shape, base)
                if b is not None and base != method:
                    s["speedup"][base] = best["samples_per_s"] / b["samples_per_s"]
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Targets (H100/H200, bf16, 32+32 tokens; docs/notes/benchmarks.md)


def _head_memory_ratio(rows: list[dict], shape: str) -> float | None:
    """hf_forward's head memory over memtax_exact's at the largest batch both measured."""
    for b in sorted({r["batch"] for r in rows if r["shape"] == shape}, reverse=True):
        e = next((r for r in rows if r["shape"] == shape and r["batch"] == b
                  and r["method"] == "memtax_exact"), None)
        h = next((r for r in rows if r["shape"] == shape and r["batch"] == b
                  and r["method"] == "hf_forward"), None)
        if e and h and e.get("head_mem") is not None and h.get("head_mem") is not None:
            return h["head_mem"] / max(e["head_mem"], 1)
    return None


def evaluate_targets(report: dict) -> list[dict]:
    """The throughput targets for H100/H200 in bf16, each met / missed / not measured, with the
    measured value."""
    rows = report["results"]
    cfg = report["config"]
    out = []

    def add(name, value, threshold, unit=""):
        status = "not measured" if value is None else ("met" if value >= threshold else "missed")
        out.append({"target": name, "value": value, "threshold": threshold, "unit": unit,
                    "status": status})

    def speed(shape, method):
        b = _best(rows, shape, method)
        return b["samples_per_s"] if b else None

    ex160 = speed("160m", "memtax_exact")
    add("160m exact samples/s", ex160, 30000.0, "samples/s")
    nc160 = speed("160m", RECIPE)
    add("160m exact vs uncached recipe", ex160 / nc160 if ex160 and nc160 else None, 20.0, "x")
    b12 = _best(rows, "12b", "memtax_exact")
    add("12b exact MFU", b12["mfu"] if b12 else None, 0.5)
    for shape in ("160m", "410m"):
        ex, hf = speed(shape, "memtax_exact"), speed(shape, "hf_forward")
        add(f"{shape} exact vs hf_forward", ex / hf if ex and hf else None, 1.3, "x")
        add(f"{shape} head memory hf_forward / exact", _head_memory_ratio(rows, shape), 5.0, "x")
    if not str(cfg["device"]).startswith("cuda") or cfg["dtype"] != "bf16":
        for t in out:
            t["note"] = "targets are for H100/H200 in bf16; this run is " + (
                f"{cfg['device']} {cfg['dtype']}")
            if t["value"] is not None:  # a value, but not one the target speaks about
                t["status"] = "n/a"
    return out


# ---------------------------------------------------------------------------------------------
# Markdown and files


def _fmt(v, spec: str = ".1f", none: str = "–") -> str:
    return none if v is None else format(v, spec)


def _gib(v) -> str:
    return "–" if v is None else f"{v / GiB:.2f}"


def _header(report: dict) -> list[str]:
    env, cfg = report["env"], report["config"]
    hw = env["gpu"] or f"CPU ({env['cpu']}, {env['cpu_count']} cores)"
    return [
        f"# memtax bench: {hw}",
        "",
        f"{env['date']}; torch {env['torch']}, triton {env['triton']}, transformers "
        f"{env['transformers']}, driver {env['driver'] or '–'}, commit "
        f"{(env['commit'] or 'unknown')[:12]}{' (dirty)' if env['dirty'] else ''}; dtype "
        f"{cfg['dtype']}, {cfg['prefix_len']}+{cfg['cont_len']} tokens, peak "
        f"{_fmt(cfg['peak_tflops'], '.0f')} TFLOP/s (dense bf16)"
        + ("" if report.get("complete", True) else "; PARTIAL: the run has not finished"),
    ] + _roofline_lines(report)


def _roofline_lines(report: dict) -> list[str]:
    """On CPU without a given peak, MFU is the fraction of each shape's measured bf16 GEMM
    rate (`memtax.bench.roofline`); say so, with the rates and the load average."""
    rates = {r["shape"]: r for r in report["results"] if r.get("roofline_tflops")}
    if not rates:
        return []
    parts = ", ".join(f"{name} {1e3 * r['roofline_tflops']:.0f} GFLOP/s (load average "
                      f"{r['load_average']:.1f})" for name, r in rates.items())
    return ["", f"MFU here is against the bf16 GEMM rate measured in this run per shape: {parts}"
                "; under load both slow down, by different factors."]


def _results_table(report: dict) -> list[str]:
    lines = [
        "| shape | method | dtype | batch | samples/s | tokens/s | TFLOP/s | MFU | peak GiB "
        "| extra GiB | head GiB | agree | n |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        agree = r.get("agree_exact")
        lines.append(
            f"| {r['shape']} | {r['method']} | {r['dtype']} | {r.get('batch_used', r['batch'])} | "
            f"{r['samples_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.3f} | "
            f"{_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}{'%' if r['mfu'] else ''} | "
            f"{_gib(r['peak_mem'])} | {_gib(r['extra_mem'])} | {_gib(r.get('head_mem'))} | "
            f"{_fmt(agree and 100 * agree, '.1f')}{'%' if agree else ''} | {r['n_samples']} |"
        )
    return lines


def _summary_table(report: dict) -> list[str]:
    lines = ["## Best batch per method: speed-ups and the Pile projection", "",
             "GPU-hours to score Pythia's 146,432,000 training sequences (143,000 steps x "
             "1,024) on one such device.", "",
             "| shape | method | batch | samples/s | vs hf_forward | vs hf_generate "
             "| vs nocache recipe | GPU-hours (Pile) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in report["summary"]:
        sp = s["speedup"]
        lines.append(
            f"| {s['shape']} | {s['method']} | {s['batch']} | {s['samples_per_s']:,.1f} | "
            + " | ".join(_fmt(sp.get(b), ".2f") + ("x" if b in sp else "") for b in BASELINES)
            + f" | {s['gpu_hours_pile']:,.1f} |"
        )
    return lines


def _targets_table(report: dict) -> list[str]:
    lines = ["## Targets (H100/H200, bf16)", "", "| target | value | threshold | status |",
             "| --- | ---: | ---: | --- |"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['value'], ',.2f')} | {t['threshold']:,} "
                     f"{t['unit']} | {t['status']} |")
    if report["targets"] and report["targets"][0].get("note"):
        lines += ["", f"Note: {report['targets'][0]['note']}."]
    return lines


def to_markdown(report: dict) -> str:
    """The report as markdown: environment, every measurement, the summary with speed-ups and
    Pile projections, skipped runs, targets."""
    lines = _header(report) + [""] + _results_table(report) + [""] + _summary_table(report)
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['shape']} {s['method']} batch {s['batch']} {s['dtype']}: {s['skipped']}"
                  for s in report["skipped"]]
    lines += [""] + _targets_table(report)
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def write_report(report: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `bench-<device>-<date>.json` and `.md` into out_dir (each to a temporary name,
    then renamed, so no partial file is left). Returns (json path, markdown path)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    env = report["env"]
    hw = _slug(env["gpu"] or "cpu")
    stamp = env["date"].replace(":", "").replace("-", "")
    base = out / f"bench-{hw}-{stamp}"
    paths = (base.with_suffix(".json"), base.with_suffix(".md"))
    texts = (json.dumps(report, indent=1, default=json_default) + "\n", to_markdown(report))
    for path, text in zip(paths, texts):
        write_bytes_atomic(path, text.encode())
    return paths
