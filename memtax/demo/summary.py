"""What the demo found: `DemoResult`, the examples per category, and the terminal summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from memtax.demo.stages import MARKER, Stage, write_json


@dataclass
class DemoResult:
    """What the demo found and where it wrote it.

    suite: for the suite route, the suite's sizes, parameters, steps, training throughput and
    final losses (None for a single model). checkpoints: one dict per scored (model, step):
    model, parameters, step, samples, memorized, seen (sequences that checkpoint trained on).
    report_notes: what the report could not show and why (e.g. too few memorized rows).
    """

    out: Path
    report: Path | None
    n_samples: int
    n_memorized: int
    corpus: dict
    categories: list[dict]
    examples: dict[str, list[dict]]
    stages: list[Stage]
    checks: dict = field(default_factory=dict)
    lengths: tuple[int, int] = (32, 32)  # (prefix_len, cont_len)
    model: str = ""
    suite: dict | None = None
    checkpoints: list[dict] = field(default_factory=list)
    report_notes: list[str] = field(default_factory=list)

    @property
    def memorized_share(self) -> float:
        return self.n_memorized / self.n_samples if self.n_samples else float("nan")


def category_examples(cats: np.ndarray, memorized: np.ndarray, sample_ids: np.ndarray,
                      describe: Callable[[int], dict], per_category: int = 2) -> dict:
    """Up to `per_category` examples of each category, memorized rows first.

    describe(sample_id) -> {"document", "prompt", "continuation"} of that sample.
    """
    from analysis.taxonomy import CATEGORIES

    examples = {}
    for c in CATEGORIES:
        in_c = np.flatnonzero(cats == c)
        chosen = [(r, True) for r in in_c[memorized[in_c]][:per_category]]
        chosen += [(r, False) for r in in_c[~memorized[in_c]][: per_category - len(chosen)]]
        examples[c] = [{"sample_id": int(sample_ids[r]), "memorized": m,
                        **describe(int(sample_ids[r]))} for r, m in chosen]
    return examples


def write_summary(result: DemoResult, root: Path, settings: dict) -> None:
    """summary.json (every number of the result plus the run's settings) and summary.txt (what
    the terminal shows), written into `root` (the staging folder of `result.out`)."""
    summary = {
        "produced_by": MARKER,
        "model": result.model,
        **settings,
        "corpus": result.corpus,
        "memorized": result.n_memorized, "memorized_share": result.memorized_share,
        "categories": result.categories, "examples": result.examples,
        "suite": result.suite, "checkpoints": result.checkpoints,
        "stages": [{**asdict(s), "rate": s.rate} for s in result.stages],
        "checks": result.checks,
        "report": None if result.report is None else str(result.report.relative_to(result.out)),
        "report_notes": result.report_notes,
    }
    write_json(summary, root / "summary.json")
    (root / "summary.txt").write_text(format_summary(result) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The terminal summary


def _example(text_prompt: str, text_cont: str, width: int = 150) -> str:
    def clean(s: str) -> str:
        return s.replace("\r", "").replace("\n", "⏎").replace("\t", "→")

    line = f"{clean(text_prompt)} ‖ {clean(text_cont)}"
    return line if len(line) <= width else line[: width - 1] + "…"


def _fmt_rate(rate: float, unit: str) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if rate >= div:
            return f"{rate / div:.1f}{suffix} {unit}/s"
    return f"{rate:.1f} {unit}/s"


def _fmt_count(n: float) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def _corpus_lines(result: DemoResult) -> list[str]:
    c = result.corpus
    parts = ", ".join(f"{p}: {v['files']:,} files" + (f" / {v['tokens']:,} tokens"
                                                      if "tokens" in v else "")
                      for p, v in c["parts"].items())
    tokens = f", {c['tokens']:,} tokens" if "tokens" in c else ""
    p, c_len = result.lengths
    lines = [f"corpus        {c['files']:,} files, {c['chars'] / 1e6:.1f} MB of text{tokens} "
             f"({parts})"]
    if result.model:
        lines.append(f"model         {result.model}")
    lines.append(f"samples       {result.n_samples:,} scored ({p + c_len}-token windows)")
    lines.append(f"memorized     {result.n_memorized:,} ({result.memorized_share:.2%}) "
                 f"reproduced their {c_len}-token continuation exactly (greedy, from the "
                 f"{p}-token prompt)")
    if result.checks.get("generate_rows") is not None:
        ok = result.checks.get("generate_agrees_on_exact_match") and result.checks.get(
            "memorized_rows_gen_score_1")
        lines.append(f"generate mode {result.checks['generate_rows']:,} rows re-decoded "
                     f"(memorized + near misses): {'agrees' if ok else 'DISAGREES'} with the "
                     "one-pass labels")
    return lines


def _suite_lines(result: DemoResult) -> list[str]:
    s = result.suite
    lines = ["", f"suite         {s['root']}",
             f"              trained on {s['documents']:,} documents (a seeded "
             f"{s['corpus_share']:.0%} of the corpus) -> {s['unique_sequences']:,} sequences of "
             f"{s['seq_len']} tokens; {s['epochs']:g} epochs = {s['sequences']:,} training "
             f"sequences, batch {s['batch_size']}, vocabulary {s['vocab_size']:,}",
             "model       parameters  training  tokens/s  final loss  checkpoint steps"]
    for m in s["models"]:
        steps = ", ".join(str(x) for x in m["steps"])
        rate = _fmt_count(m["tokens_per_s"]) if m.get("tokens_per_s") else "n/a"
        took = f"{m['train_s']:.1f} s" if m.get("train_s") is not None else "n/a"
        loss = f"{m['final_loss']:.3f}" if m.get("final_loss") is not None else "n/a"
        lines.append(f"{m['name']:<11} {_fmt_count(m['parameters']):>10}  {took:>8}  "
                     f"{rate:>8}  {loss:>10}  {steps}")
    if s.get("tokenizer_s") is not None and s.get("stream_s") is not None:
        lines.append(f"(tokenizer trained in {s['tokenizer_s']:.1f} s, stream written in "
                     f"{s['stream_s']:.1f} s)")
    return lines


def _checkpoint_lines(result: DemoResult) -> list[str]:
    lines = ["", "memorized per checkpoint (samples whose continuation each checkpoint "
             "reproduces exactly)", "model       step  seen sequences  memorized    rate"]
    for r in result.checkpoints:
        rate = r["memorized"] / r["samples"] if r["samples"] else float("nan")
        lines.append(f"{r['model']:<11} {r['step']:>4}  {r['seen']:>14,}  {r['memorized']:>9,}"
                     f"  {rate:6.2%}")
    return lines


def _category_lines(result: DemoResult) -> list[str]:
    lines = ["", "category        memorized   share  candidates  rate"]
    for row in result.categories:
        share = row["share"]
        share_s = "   n/a" if share != share else f"{share:6.1%}"
        rate = row["memorization_rate"]
        rate_s = "  n/a" if rate != rate else f"{rate:.2%}"
        lines.append(f"{row['category']:<15} {row['memorized']:>9,}  {share_s}  "
                     f"{row['candidates']:>10,}  {rate_s}")
        for ex in result.examples.get(row["category"], []):
            tag = "memorized" if ex["memorized"] else "candidate, not memorized"
            lines.append(f"    [{tag}; {ex['document']}]")
            lines.append(f"      {_example(ex['prompt'], ex['continuation'])}")
    return lines


def _stage_lines(result: DemoResult) -> list[str]:
    lines = ["", "stage                  time    throughput"]
    total = 0.0
    for s in result.stages:
        total += s.seconds
        rate = _fmt_rate(s.rate, s.unit) if s.amount > 1 else ""  # loading one thing: no rate
        lines.append(f"{s.name:<20} {s.seconds:7.1f} s  {rate}".rstrip())
    lines.append(f"{'total':<20} {total:7.1f} s")
    return lines


def format_summary(result: DemoResult) -> str:
    """The terminal summary: corpus, model (or suite: sizes, parameters, steps, training tokens/s,
    final losses), samples, memorized count and share (per checkpoint and size for a suite),
    categories with two decoded examples each, each stage's time and throughput, the report's
    path and what it could not show."""
    lines = ["", "memtax demo: summary", "=" * 20, *_corpus_lines(result)]
    if result.suite:
        lines += _suite_lines(result)
    if result.checkpoints:
        lines += _checkpoint_lines(result)
    lines += _category_lines(result)
    lines += _stage_lines(result)
    lines.append("")
    lines.append(f"report        {result.report}")
    for note in result.report_notes:
        lines.append(f"  note: {note}")
    lines.append(f"all outputs   {result.out}/ (summary.json, samples/scores/features/categories "
                 "parquet, index/)")
    return "\n".join(lines)
