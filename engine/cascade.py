"""Label-only cascade: `exact_match` and `match_len` without running every row to the end.

The one teacher-forced pass (`engine.score`) runs the backbone over all P+C-1 tokens and the head
over every position of every row. When only the labels are wanted, most rows are decided by their
first few continuation tokens: a row whose greedy token differs from the truth at continuation
position j has match_len = j whatever follows. The cascade therefore runs in stages with
boundaries 0 < j_1 < j_2 < ... < C:

    stage 1: backbone over prompt + first j_1 - 1 continuation tokens for every row, KV cache
             kept; head only at the j_1 positions that predict continuation tokens 0..j_1-1;
    stage s: only the rows that matched all j_{s-1} so far (their cache rows selected with the
             model's own `batch_select_indices`) feed the next j_s - j_{s-1} tokens on that cache;
             head at those positions only.

A row leaves at the first stage where it mismatches, with match_len = j_{s-1} + its leading run
within the stage. Decisions are the same argmax comparisons the full pass makes (same fused head,
same masked EOS), so the labels are the full pass's labels; the only difference is that later
positions attend to cached keys instead of recomputing them, which changes nothing but float
rounding (~1e-6 in fp32; see docs/notes/decoding.md).

`DEFAULT_STAGES` = (1, 8) was chosen by measurement (benchmarks/bench_generate.py with
MEMTAX_BENCH_SWEEP=1, Pythia-70M shape on CPU, docs/notes/decoding.md): within noise of the best
schedule on ~1%-memorized, ~30%-memorized and geometrically thinning mixes, where every
one-stage schedule loses clearly on one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from engine.lengths import check_token_batch

__all__ = ["DEFAULT_STAGES", "LABEL_FIELDS", "cascade_match_len", "label_columns", "stage_bounds"]

DEFAULT_STAGES: tuple[int, ...] = (1, 8)
LABEL_FIELDS = [pa.field("exact_match", pa.bool_()), pa.field("match_len", pa.int16())]
# Rows of hidden states per fused-head call on CPU. The cascade's head calls are small (a
# batch's surviving rows times one stage's width: at batch 32 with DEFAULT_STAGES a few hundred
# rows at most), so this bound seldom splits one; 256 is what the cascade's benchmarks
# (benchmarks/bench_generate.py, docs/notes/decoding.md) were measured with. Scoring's full pass
# calls the head on every position of a batch at once and uses 2,048-row blocks
# (engine.scoring.CPU_HEAD_ROWS) because smaller ones were slower there under load.
_CPU_HEAD_ROWS = 256


def stage_bounds(stages: Sequence[int], cont_len: int) -> list[int]:
    """Stage ends [j_1, ..., C]: the given ends below C, sorted, plus C itself."""
    if isinstance(stages, (int, np.integer)):
        stages = (int(stages),)
    try:
        ends = sorted({int(s) for s in stages})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"stages must be a sequence of positive integers, got {stages!r}") from exc
    if any(s < 1 for s in ends):
        raise ValueError(f"stages must be positive continuation lengths, got {stages!r}")
    return [s for s in ends if s < cont_len] + [cont_len]


@torch.inference_mode()
def cascade_match_len(sm, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                      masked_token: int | None, stages: Sequence[int] = DEFAULT_STAGES,
                      impl: str = "auto", stats: dict | None = None,
                      verify: bool = True) -> torch.Tensor:
    """match_len (B,) int64 of tokens (B, P+C): the leading continuation tokens that greedy
    decoding from the prompt reproduces (exact_match = match_len == C), by the staged cascade.

    stats: if a dict is given, it receives `survivors`, the number of rows entering each stage.
    verify: check the Triton head against its twin on first use (`kernels.verify`).
    """
    check_token_batch(tokens, prefix_len, cont_len)
    p, c = int(prefix_len), int(cont_len)
    ends = stage_bounds(stages, c)
    dev = sm.device
    tokens = tokens.to(device=dev, dtype=torch.int64)
    b = tokens.shape[0]
    match_len = torch.zeros(b, dtype=torch.int64, device=dev)
    rows = torch.arange(b, device=dev)               # original indices of the rows still in play
    cache, fed, lo = None, 0, 0                       # fed: input tokens already in the cache
    survivors = []
    for s, hi in enumerate(ends):
        survivors.append(int(rows.numel()))
        if rows.numel() == 0:
            break
        last = s == len(ends) - 1
        # hidden at positions P-1+lo .. P-1+hi-1 predict continuation tokens lo..hi-1
        out = sm.backbone(tokens[rows, fed : p + hi - 1], past_key_values=cache,
                          use_cache=not last)
        cache, fed = out.past_key_values, p + hi - 1
        width = hi - lo
        hid = out.hidden[:, -width:].reshape(-1, out.hidden.shape[-1])
        truth = tokens[rows, p + lo : p + hi]
        pred = sm.head(hid, truth.reshape(-1), masked_token=masked_token, impl=impl,
                       cpu_block_rows=_CPU_HEAD_ROWS, verify=verify)[0].view(-1, width)
        lead = (pred == truth).cumprod(dim=1).sum(dim=1)
        match_len[rows] = lo + lead
        alive = lead == width
        if not last and not bool(alive.all()):
            keep = alive.nonzero().flatten()
            if keep.numel():
                cache.batch_select_indices(keep)
            rows = rows[keep]
        lo = hi
    if stats is not None:
        stats["survivors"] = survivors
        stats["stage_ends"] = ends
    return match_len


def label_columns(sm, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                  masked_token: int | None, stages: Sequence[int] = DEFAULT_STAGES,
                  impl: str = "auto", verify: bool = True) -> dict[str, np.ndarray]:
    """`labels_only` columns for one batch: exact_match (bool) and match_len (int16)."""
    ml = cascade_match_len(sm, tokens, prefix_len=prefix_len, cont_len=cont_len,
                           masked_token=masked_token, stages=stages, impl=impl,
                           verify=verify).cpu()
    return {"exact_match": (ml == cont_len).numpy(), "match_len": ml.to(torch.int16).numpy()}
