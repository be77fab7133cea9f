"""Free-running greedy scores (Pythia's memorization score) that decode only what must be decoded.

Greedy decoding from the prompt equals the teacher-forced argmax up to and including the first
mismatch (`engine.score`). With m = match_len, a row's greedy continuation g satisfies

    g[0:m] = truth[0:m]        g[m] = tf_argmax[m]        (known after the one pass)
    g[m+1:] = free-running greedy decoding from prompt + g[0:m+1]          (decoded here)

so a memorized row (m = C) and a row that missed only its last token (m = C-1) need no decoding.
Every other row resumes at continuation position m+1, one token per step for all unfinished
rows, on the KV cache of its true prefix that the teacher-forced pass already built.

The default, "lean" loop (`_lean_loop`, on `engine.decode_cache`) copies that cache once into a
static cache where slot == position for every row; each step writes a row's new K/V at its own
position, overwriting the stale teacher-forced slots in place, under a plain per-row causal
mask (slot <= position) built here as a 4-D mask (HF does not rebuild it), with per-row
`position_ids`. Row r needs C-1-m_r steps, known up front, so rows are ordered by that and the
rows still decoding are always a prefix: compaction is a view, and the loop stops after the
longest row (early exit). The next token is an argmax-only head (`kernels.argmax_head`) with
the fused head's exact logits and the scorer's masked (EOS) token. On CUDA the step can be
captured as CUDA graphs (`DecodeOptions(cuda_graphs=True)`), one per bucket size; the state
that holds them lives in a `DecodeWorkspace` that outlives the batch. Each graph's first replay
is checked against the eager step, and the Triton heads against their torch twins, on first use
(`verify=True`, the default; a mismatch falls back to the eager step / the twin with a warning).

The first, "dynamic" loop (`_decode_loop`, still used for sliding-window caches and on request)
keeps the pass's `DynamicCache` with per-row holes:

    cache slots   0 ........ P+m-1 | P+m ... L0-1 | L0  L0+1 ...
                  true prefix      | teacher-     | appended by decoding
                  (= greedy prefix)| forced, stale| (this row's greedy tokens)

masked by a 2-D attention mask, compacting finished rows with `batch_select_indices`, its next
token from `ScoringModel.head` (= `kernels.fused_head`).

With `masked_token` = the model's EOS id this reproduces Pythia's evaluation,
`generate(ctx, max_length=P+C, min_length=P+C)` (greedy; `min_length` forbids EOS at every
generated step, so no row ever stops early); with `masked_token=None` EOS is an ordinary token
and decoding does not stop at it either (`generate` with no EOS id).

Columns (`generation_columns`): `gen_score` float32 = gen_match_count / C (Pythia's score),
`gen_match_count` int16 = positions where greedy == truth, `gen_edit_distance` int16 = token-level
Levenshtein distance between greedy continuation and truth (rapidfuzz), and with
`keep_tokens=True` `gen_tokens`, the C greedy continuation tokens (list<int32>).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import torch

from engine.lengths import check_token_batch
from engine.options import DecodeOptions

__all__ = [
    "GEN_FIELDS",
    "GEN_TOKENS_FIELD",
    "gen_fields",
    "gen_columns",
    "generation_columns",
    "resume_greedy",
    "teacher_forced_greedy",
]

GEN_FIELDS = [
    pa.field("gen_score", pa.float32()),
    pa.field("gen_match_count", pa.int16()),
    pa.field("gen_edit_distance", pa.int16()),
]
GEN_TOKENS_FIELD = pa.field("gen_tokens", pa.list_(pa.int32()))

def gen_fields(keep_tokens: bool = False) -> list[pa.Field]:
    """The columns `mode="generate"` adds to the score table, in order."""
    return GEN_FIELDS + ([GEN_TOKENS_FIELD] if keep_tokens else [])


# ---------------------------------------------------------------------------------------------
# Validation


def _as_long(x, device, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# The teacher-forced greedy prefix (when the scorer's pass is not at hand)


@torch.inference_mode()
def teacher_forced_greedy(sm, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                          masked_token: int | None, upto: int | None = None,
                          verify: bool = True):
    """Teacher-forced argmax over the continuation, with the KV cache of the true prefix.

    tokens (B, P+C) int64. Runs the backbone over tokens[:, :P+upto] (default upto = C-1, the
    scorer's whole pass) and the head at positions P-1..P+upto-1.
    Returns (tf_argmax (B, upto+1) int64, match_len (B,) int64 counted within those upto+1
    positions, cache of length P+upto). verify: as for `resume_greedy`.
    """
    p, c = prefix_len, cont_len
    upto = c - 1 if upto is None else upto
    out = sm.backbone(tokens[:, : p + upto], use_cache=True)
    b, _, d = out.hidden.shape
    hid = out.hidden[:, p - 1 :].reshape(-1, d)
    tgt = tokens[:, p : p + upto + 1].reshape(-1)
    argmax = sm.head(hid, tgt, masked_token=masked_token, verify=verify)[0].view(b, upto + 1)
    match_len = (argmax == tokens[:, p : p + upto + 1]).cumprod(dim=1).sum(dim=1)
    return argmax, match_len, out.past_key_values


# ---------------------------------------------------------------------------------------------
# Cache surgery (DynamicCache: per-layer `keys`/`values` of shape (B, heads, slots, head_dim))


def _dynamic_layers(cache) -> list | None:
    """The cache's layers when every one is a plain growing `DynamicLayer` (whose slots can be
    cut freely); None otherwise (sliding windows, static, quantized or offloaded caches)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    if getattr(cache, "offloading", False):
        return None
    return layers


def _drop_slots(cache, start: int, stop: int) -> bool:
    """Remove cache slots [start, stop) in every layer (they are masked for every row anyway;
    dropping them shortens the per-step attention and cache copy). False if not possible."""
    layers = _dynamic_layers(cache)
    if layers is None or stop <= start:
        return False
    for layer in layers:
        if not getattr(layer, "is_initialized", True) or layer.keys is None or layer.keys.numel() == 0:
            continue
        layer.keys = torch.cat([layer.keys[:, :, :start], layer.keys[:, :, stop:]], dim=2)
        layer.values = torch.cat([layer.values[:, :, :start], layer.values[:, :, stop:]], dim=2)
    return True


def _select_rows(cache, rows: torch.Tensor) -> None:
    """Keep only batch rows `rows` of the cache (the model's own cache method)."""
    cache.batch_select_indices(rows)


def _has_sliding_layers(cache) -> bool:
    flags = getattr(cache, "is_sliding", None)
    try:
        return bool(any(flags)) if flags is not None else False
    except TypeError:
        return bool(flags)


# ---------------------------------------------------------------------------------------------
# Resumed greedy decoding


class _Decoding(NamedTuple):
    """What every step of one `resume_greedy` call shares."""

    sm: Any
    p: int
    c: int
    masked_token: int | None
    options: DecodeOptions
    workspace: Any           # engine.decode_cache.DecodeWorkspace
    verify: bool = True      # first-use checks of the Triton heads and the CUDA graphs


@torch.inference_mode()
def resume_greedy(
    sm,
    tokens: torch.Tensor,
    *,
    prefix_len: int,
    cont_len: int,
    masked_token: int | None,
    match_len=None,
    tf_argmax: torch.Tensor | None = None,
    cache: Any = None,
    options: DecodeOptions | None = None,
    workspace=None,
    verify: bool = True,
) -> torch.Tensor:
    """Free-running greedy continuations (B, C) int64 of tokens (B, P+C), resuming every row at
    its first mismatch.

    match_len (B,) and tf_argmax (B, C) come from the scorer's teacher-forced pass (its argmax at
    continuation positions, `masked_token` excluded), and `cache` is that pass's KV cache over
    tokens[:, :P+C-1] (or any cache of the true prefix of length >= P + match_len for every row).
    The cache is consumed (emptied or cut down; do not reuse it). When tf_argmax or the cache
    is missing, a teacher-forced prefix pass over just the rows that need decoding rebuilds them.

    options: `engine.options.DecodeOptions` (decode loop, step head, CUDA graphs, mask,
    compaction); default `DecodeOptions()`. workspace: an `engine.decode_cache.DecodeWorkspace`
    that holds the lean loop's reusable state (buffers, CUDA graphs) across calls; default a
    fresh one for this call. verify: check the Triton heads (`kernels.verify`) and each CUDA
    graph's first replay (`engine.decode_cache.CheckedReplays`) against their eager twins,
    falling back to those on a mismatch; False (benchmarks) trusts them unchecked.
    """
    from engine.decode_cache import DecodeWorkspace

    check_token_batch(tokens, prefix_len, cont_len)
    options = DecodeOptions() if options is None else options
    if not isinstance(options, DecodeOptions):
        raise ValueError(f"options must be an engine.options.DecodeOptions, got "
                         f"{type(options).__name__}")
    run = _Decoding(sm, int(prefix_len), int(cont_len), masked_token, options,
                    DecodeWorkspace() if workspace is None else workspace, bool(verify))
    b, c = tokens.shape[0], run.c
    tokens = tokens.to(device=sm.device, dtype=torch.int64)
    if b == 0:
        return torch.empty((0, c), dtype=torch.int64, device=sm.device)
    if tf_argmax is None or match_len is None or cache is None:
        return _resume_rebuilding(run, tokens, match_len, tf_argmax)
    tf_argmax = _as_long(tf_argmax, sm.device, "tf_argmax", (b, c))
    m_all = _match_len(match_len, sm.device, b, c)
    if _has_sliding_layers(cache):
        # Sliding windows count cache slots, not positions: a hole would shift the window.
        return _resume_rebuilding(run, tokens, m_all, tf_argmax)
    # g[0:m] = truth, g[m] = tf_argmax[m]; the rest is decoded below.
    greedy = _teacher_prefix(tokens, tf_argmax, m_all, run.p, c)
    active = torch.nonzero(m_all < c - 1).flatten()
    if active.numel() == 0:
        return greedy
    l0 = cache.get_seq_length()
    need = int(m_all[active].max()) + run.p
    if need > l0:
        raise ValueError(
            f"cache holds {l0} slots but a row needs its true prefix of {need}; expected the "
            "KV cache of the teacher-forced pass over tokens[:, :P+C-1]"
        )
    return _decode(run, greedy, active, m_all[active], cache, active, l0, b)


def _match_len(match_len, device, b: int, c: int) -> torch.Tensor:
    m = _as_long(match_len, device, "match_len", (b,))
    if bool(((m < 0) | (m > c)).any()):
        raise ValueError(f"match_len must lie in [0, cont_len={c}], got {m.tolist()}")
    return m


def _decode(run: _Decoding, greedy, rows, m, cache, src_rows, l0: int, n_src: int):
    """Decode g[m+1:] for `rows` (indices into greedy), whose true prefixes are rows `src_rows`
    of `cache` (n_src rows, l0 slots), on the loop the options ask for. Returns greedy."""
    if run.options.decoder == "lean" and _dynamic_layers(cache) is not None:
        return _lean_loop(run, greedy, rows, m, cache, src_rows, l0)
    if src_rows.numel() < n_src:
        _select_rows(cache, src_rows)
    return _decode_loop(run, greedy, rows, m, cache, l0, run.options.compact_fraction)


def _teacher_prefix(tokens, tf_argmax, m, p, c) -> torch.Tensor:
    """greedy (B, C) with g[0:m] = truth, g[m] = tf_argmax[m] (and tf_argmax beyond m as filler)."""
    cols = torch.arange(c, device=tokens.device)[None, :]
    return torch.where(cols < m[:, None], tokens[:, p:], tf_argmax).clone()


def _resume_rebuilding(run: _Decoding, tokens, match_len, tf_argmax) -> torch.Tensor:
    """Resume without the scorer's cache. Without match_len: the scorer's pass (argmax only)
    with a cache, then the usual resume. With match_len: one pass over the true prefix of only
    the rows that did not match everything, up to the longest of their first mismatches (the
    hidden state at P-1+m gives g[m] when tf_argmax is missing), then decode as usual."""
    sm, p, c = run.sm, run.p, run.c
    b = tokens.shape[0]
    if match_len is None:
        tf_argmax, m_all, cache = teacher_forced_greedy(sm, tokens, prefix_len=p, cont_len=c,
                                                        masked_token=run.masked_token,
                                                        verify=run.verify)
        return resume_greedy(sm, tokens, prefix_len=p, cont_len=c, masked_token=run.masked_token,
                             match_len=m_all, tf_argmax=tf_argmax, cache=cache,
                             options=run.options, workspace=run.workspace, verify=run.verify)
    m_all = _match_len(match_len, tokens.device, b, c)
    greedy = tokens[:, p:].clone()
    if tf_argmax is not None:
        greedy = _teacher_prefix(tokens, _as_long(tf_argmax, tokens.device, "tf_argmax", (b, c)),
                                 m_all, p, c)
    need = torch.nonzero(m_all < c).flatten()
    if need.numel() == 0:
        return greedy
    m = m_all[need]
    upto = int(m.max())
    # slots < P+m_r of this cache are row r's true prefix (= its greedy prefix)
    out = sm.backbone(tokens[need, : p + upto], use_cache=True)
    if tf_argmax is None:
        hid = out.hidden[torch.arange(need.numel(), device=tokens.device), p - 1 + m]
        greedy[need, m] = sm.head(hid, tokens[need, p + m], masked_token=run.masked_token,
                                  verify=run.verify)[0]
    dec = m < c - 1
    if not bool(dec.any()):
        return greedy
    cache = out.past_key_values
    if _has_sliding_layers(cache):
        return _resume_by_groups(run, tokens, greedy, need[dec], m[dec])
    sel = dec.nonzero().flatten()
    return _decode(run, greedy, need[sel], m[sel], cache, sel, p + upto, need.numel())


def _resume_by_groups(run: _Decoding, tokens, greedy, active, m) -> torch.Tensor:
    """For caches that cannot hold a per-row hole (sliding windows): rows sharing a first
    mismatch share a prefix length, so each group decodes on its own hole-free cache."""
    for mv in torch.unique(m).tolist():
        grp = active[m == mv]
        out = run.sm.backbone(tokens[grp, : run.p + mv], use_cache=True)
        mm = torch.full((grp.numel(),), mv, dtype=torch.int64, device=tokens.device)
        sub = _decode_loop(run, greedy[grp], torch.arange(grp.numel(), device=tokens.device), mm,
                           out.past_key_values, run.p + mv, 0.0)
        greedy[grp] = sub
    return greedy


def _lean_loop(run: _Decoding, greedy, rows, m, cache, src_rows, l0):
    """Decode g[m+1:] for `rows` (indices into greedy) on the static per-row-position cache
    (`engine.decode_cache`). `cache` is a DynamicCache whose slot k is position k for every
    row below P+m (the scorer's pass over P+C-1 tokens, or a pass over the true prefixes, of
    length l0); `src_rows` are the rows' indices in it. Mutates and returns greedy.

    Row r needs C-1-m_r steps, known up front: rows are ordered by that (most first), so the
    rows still decoding at step s are a prefix of length live[s] and compaction is a view. The
    only host-device syncs are m (once) and the final write-back's indices.
    """
    p, c = run.p, run.c
    dev = greedy.device
    layers = _dynamic_layers(cache)
    m_host = m.cpu()
    order = torch.argsort(m_host, stable=True)              # fewest matched = most steps first
    m_sorted = m_host[order]
    need = c - 1 - m_sorted                                  # steps per row, non-increasing, >= 1
    n_steps = int(need[0])
    live = (need[None, :] > torch.arange(n_steps)[:, None]).sum(1).tolist()
    st = run.workspace.state_for(run.sm, layers, layers[0].keys.shape[0], p + c - 1, c - 1,
                                 run.masked_token, run.options, verify=run.verify)
    order_d, m_d = order.to(dev), m_sorted.to(dev)
    rows_s = rows[order_d]
    n0 = rows_s.numel()
    st.cache.load(layers, src_rows.to(dev)[order_d], l0)
    cache.reset()      # consumed (as documented): free the pass's K/V before decoding
    st.cur[:n0].copy_(greedy[rows_s, m_d])                   # g[m]: the first greedy mismatch
    st.pos[:n0].copy_(p + m_d)
    for s in range(n_steps):
        n = live[s]
        st.step(st.bucket(n))
        st.hist[:n, s].copy_(st.cur[:n])
    # step s of row i produced g[m_i + 1 + s], for s < need_i
    ii, ss = (torch.arange(n_steps)[None, :] < need[:, None]).nonzero(as_tuple=True)
    ii, ss = ii.to(dev), ss.to(dev)
    greedy[rows_s[ii], m_d[ii] + 1 + ss] = st.hist[ii, ss]
    return greedy


def _decode_loop(run: _Decoding, greedy, rows, m, cache, l0, compact_fraction):
    """Decode g[m+1:] for `rows` (indices into greedy), whose cache (rows in that order) has
    `l0` slots of which the first p+m are each row's true prefix. Mutates and returns greedy."""
    sm, p, c, masked_token = run.sm, run.p, run.c, run.masked_token
    dev = greedy.device
    # Slots valid for every row: [0, p + min m); stale for every row: [p + max m, l0).
    hi = p + int(m.max())
    if hi < l0 and _drop_slots(cache, hi, l0):
        l0 = hi
    steps = c - 1 - int(m.min())                               # the longest row's steps
    # attention mask over cache slots, allocated once: [valid true prefix | stale | decoded]
    slot = torch.arange(l0 + steps, device=dev)[None, :]
    attn = ((slot < (p + m)[:, None]) | (slot >= l0)).to(torch.long)
    j = m.clone()                                              # continuation index of the input
    cur = greedy[rows, j]                                      # g[m], the first greedy mismatch
    dummy = torch.zeros(rows.numel(), dtype=torch.int64, device=dev)
    live = torch.ones(rows.numel(), dtype=torch.bool, device=dev)
    for s in range(steps):
        out = sm.backbone(cur[:, None], past_key_values=cache, use_cache=True,
                          attention_mask=attn[:, : l0 + s + 1], position_ids=(p + j)[:, None])
        cache = out.past_key_values
        nxt = sm.head(out.hidden[:, -1], dummy, masked_token=masked_token, verify=run.verify)[0]
        j = j + 1
        # rows that finished earlier but were not compacted away must not write
        w = live.nonzero().flatten()
        greedy[rows[w], j[w]] = nxt[w]
        live = live & (j < c - 1)
        n_live = int(live.sum())
        if n_live == 0:
            break
        n = live.numel()
        if n_live < n and (n - n_live) >= compact_fraction * n:
            keep = live.nonzero().flatten()
            _select_rows(cache, keep)
            rows, j, nxt, attn, live, dummy = (rows[keep], j[keep], nxt[keep], attn[keep],
                                               live[keep], dummy[keep])
        cur = nxt
    return greedy


# ---------------------------------------------------------------------------------------------
# Columns


def generation_columns(greedy, truth, *, keep_tokens: bool = False) -> dict[str, np.ndarray]:
    """Score columns of greedy continuations against the true ones, both (B, C) integer.

    gen_match_count: positions where they agree; gen_score = that / C (Pythia's memorization
    score); gen_edit_distance: Levenshtein distance over token sequences (insert, delete and
    substitute cost 1); gen_tokens (keep_tokens): the greedy continuation, an object array of
    int32 arrays (what pyarrow turns into list<int32>).
    """
    from rapidfuzz.distance import Levenshtein

    g = greedy.cpu().numpy() if isinstance(greedy, torch.Tensor) else np.asarray(greedy)
    t = truth.cpu().numpy() if isinstance(truth, torch.Tensor) else np.asarray(truth)
    if g.ndim != 2 or g.shape != t.shape:
        raise ValueError(f"greedy and truth must be 2-D of one shape, got {g.shape} and {t.shape}")
    c = g.shape[1]
    if c == 0:
        raise ValueError("continuations must have at least one token")
    count = (g == t).sum(axis=1)
    dist = np.fromiter((Levenshtein.distance(a, b) for a, b in zip(g.tolist(), t.tolist())),
                       dtype=np.int64, count=g.shape[0])
    cols = {
        "gen_score": (count / c).astype(np.float32),
        "gen_match_count": count.astype(np.int16),
        "gen_edit_distance": dist.astype(np.int16),
    }
    if keep_tokens:
        toks = np.empty(g.shape[0], dtype=object)
        toks[:] = list(g.astype(np.int32))
        cols["gen_tokens"] = toks
    return cols


def gen_columns(sm, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                masked_token: int | None, match_len=None, tf_argmax=None, cache=None,
                keep_tokens: bool = False, options: DecodeOptions | None = None,
                workspace=None, verify: bool = True) -> dict[str, np.ndarray]:
    """`mode="generate"` columns for one batch: resume greedy decoding at each row's first
    mismatch (reusing the scorer's tf_argmax and cache when given) and compare with the truth.
    options / workspace / verify: as for `resume_greedy`."""
    greedy = resume_greedy(sm, tokens, prefix_len=prefix_len, cont_len=cont_len,
                           masked_token=masked_token, match_len=match_len, tf_argmax=tf_argmax,
                           cache=cache, options=options, workspace=workspace, verify=verify)
    return generation_columns(greedy, tokens[:, prefix_len:], keep_tokens=keep_tokens)
