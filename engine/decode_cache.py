"""A static, per-row-position KV cache for greedy decoding, and the decode state built on it.

`engine.generate` resumes every row at its own first mismatch m, so after the teacher-forced
pass the rows of a batch stand at different positions. In this cache **slot index == position
for every row**: K/V are preallocated as (B, heads, S, head_dim) per layer (S = P + C - 1, the
teacher-forced pass's length), and a decode step writes each row's new K/V at that row's own
position (`scatter_` along the slot axis). A row that diverged at m therefore overwrites its
stale teacher-forced slots P+m, P+m+1, ... in place as it decodes; the slots above its current
position are stale or empty and a plain per-row causal mask (slot <= position) hides them. No
holes, no stale-slot bookkeeping, static shapes:

    slot        0 ............ P+m-1 | P+m ... pos | pos+1 ... S-1
    row r       true prefix           | decoded     | masked (stale teacher-forced / unused)

`PositionalCache` is a transformers 5.24 `Cache` (its layers are `CacheLayerMixin`s), so the
models' own attention code runs unchanged: they call `cache.update(k, v, layer_idx)` and get
the whole (B, H, S, D) K/V back. Positions are not passed to `update` in transformers 5.24, so
the cache holds the current per-row positions (`cache.pos`, set by the decoder before each
step). The decoder passes a 4-D mask it builds itself (bool for SDPA, additive for eager
attention), which `create_causal_mask` returns as is (no per-step mask building), and per-row
`position_ids`.

`DecodeState` owns one such cache plus the step's input/output buffers (current token,
position, per-step history). It outlives a batch: a `DecodeWorkspace` (one per scoring run,
or one the caller keeps across runs) holds it, so on CUDA each step shape can be captured once
as a CUDA graph and replayed for every batch. Rows are ordered
by how many steps they need, most first; row r finishes after C-1-m_r steps, known up front, so
the live rows are always a prefix and compaction is a view (`[:n]`), never a copy. With graphs
the prefix is rounded up to a few bucket sizes (powers of two) and finished rows ride along
(their position is clamped to the last slot; their outputs are ignored). The first replay of
each bucket's graph is checked against the eager step on the same inputs (`CheckedReplays`):
a graph that disagrees is dropped with a warning and the state decodes eagerly from then on.

The step's head is `kernels.argmax_head` (the fused head's exact logits, argmax only). On a CPU
with bf16 dot products and an fp32 model it is `kernels.argmax_head_screened.ScreenedHead`
instead: a bf16 GEMM screens the vocabulary under a proven error bound and fp32 decides among
the few candidates (same argmax; `DecodeOptions.screened_head` chooses).
"""

from __future__ import annotations

import warnings

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from engine.options import DecodeOptions

__all__ = ["PositionalCache", "PositionalLayer", "DecodeState", "DecodeWorkspace", "CheckedReplays",
           "GraphVerificationWarning", "mask_kind", "step_mask"]


class PositionalLayer(CacheLayerMixin):
    """One layer's K/V (B, H, S, D) where `update` writes each row's new states at the row's
    own position (`owner.pos`, (n,) int64), in place; `keys`/`values` are views of the first
    n rows of the full buffers (`owner.use_rows`)."""

    is_compileable = True
    is_sliding = False
    is_croppable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, owner: PositionalCache):
        super().__init__()
        self.full_keys, self.full_values = keys, values
        self.keys, self.values = keys, values
        self.owner = owner
        self.device = keys.device
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:  # preallocated
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """key_states/value_states (n, H, T, D) for positions pos .. pos+T-1 of each row."""
        pos = self.owner.pos
        t = key_states.shape[-2]
        idx = pos[:, None] if t == 1 else pos[:, None] + torch.arange(t, device=pos.device)
        idx = idx[:, None, :, None]
        self.keys.scatter_(2, idx.expand_as(key_states), key_states)
        self.values.scatter_(2, idx.expand_as(value_states), value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[2], 0          # every slot is a key; the mask picks the valid ones

    def get_seq_length(self) -> int:
        # Only HF's own mask building (the 2-D mask mode) reads this, as the query offset: S-1
        # makes its causal part admit every slot for a one-token query, and the 2-D mask then
        # selects each row's slots. Positions always come from `position_ids`.
        return self.keys.shape[2] - 1

    def get_max_length(self) -> int:
        return self.keys.shape[2]


class PositionalCache(Cache):
    """A `Cache` of `PositionalLayer`s over preallocated K/V buffers, one pair per layer."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]):
        self.pos: torch.Tensor | None = None
        super().__init__(layers=[PositionalLayer(k, v, self) for k, v in zip(keys, values)])

    @property
    def slots(self) -> int:
        return self.layers[0].full_keys.shape[2]

    @property
    def capacity(self) -> int:
        return self.layers[0].full_keys.shape[0]

    def use_rows(self, n: int, pos: torch.Tensor) -> None:
        """Make the first n rows the batch (views, no copy); pos (n,): their write positions."""
        self.pos = pos
        for layer in self.layers:
            layer.keys, layer.values = layer.full_keys[:n], layer.full_values[:n]

    def load(self, src_layers, rows: torch.Tensor, length: int) -> None:
        """Copy slots [0, length) of batch rows `rows` (n,) of another cache's layers (each with
        `keys`/`values` (B', H, >= length, D)) into rows [0, n) of this one."""
        n = rows.numel()
        for dst, src in zip(self.layers, src_layers):
            for d, s in ((dst.full_keys, src.keys), (dst.full_values, src.values)):
                if length == d.shape[2] and s.shape[2] == length:
                    torch.index_select(s, 0, rows, out=d[:n])     # contiguous target: one copy
                else:
                    d[:n, :, :length].copy_(s.index_select(0, rows)[:, :, :length])


# ---------------------------------------------------------------------------------------------
# Masks


def mask_kind(model, requested: str = "auto") -> str:
    """How decode steps pass their mask: "bool4d" (SDPA), "float4d" (eager) or "2d" (anything
    else; HF then builds the 4-D mask itself every step). requested: "auto", "4d" or "2d"."""
    if requested not in ("auto", "4d", "2d"):
        raise ValueError(f"mask must be 'auto', '4d' or '2d', got {requested!r}")
    impl = getattr(model.config, "_attn_implementation", None)
    if requested == "2d" or impl not in ("sdpa", "eager"):
        return "2d"
    return "bool4d" if impl == "sdpa" else "float4d"


def step_mask(kind: str, slots: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype):
    """The mask of a one-token step: row i sees slots <= pos[i]. slots (S,), pos (n,)."""
    ok = slots[None, :] <= pos[:, None]                              # (n, S)
    if kind == "2d":
        return ok.to(torch.long)
    ok = ok[:, None, None, :]                                        # (n, 1, 1, S)
    if kind == "bool4d":
        return ok
    zero = torch.zeros((), dtype=dtype, device=pos.device)
    return torch.where(ok, zero, torch.finfo(dtype).min)


# ---------------------------------------------------------------------------------------------
# Captured steps, checked on first replay


class GraphVerificationWarning(RuntimeWarning):
    """A captured decode step disagreed with the eager step; the decoder runs eagerly."""


class CheckedReplays:
    """The captured decode steps of one state, one per bucket size, each checked on its first
    replay against the eager step.

    eager(n) runs one eager step for rows [0, n) in place on the step buffers `cur` (next
    token) and `pos` (position); a replay (`add(n, replay)`) is the captured step for n rows
    on the same buffers. The first replay per bucket runs from a copy of (cur, pos); then the
    inputs are restored and the eager step runs, so the state kept is always the eager
    step's (its K/V writes land on the same slots and overwrite the replay's). If the two
    disagree on any row's next token or position, every replay is dropped, a
    `GraphVerificationWarning` says so (once: there is nothing left to replay) and `failure`
    keeps the reason. Tokens must be equal exactly: the graph replays the eager step's own
    kernels on the same inputs. verify=False replays without the check (benchmarks).
    """

    def __init__(self, eager, cur: torch.Tensor, pos: torch.Tensor, *, verify: bool = True):
        self.eager, self.cur, self.pos, self.verify = eager, cur, pos, verify
        self.replays: dict = {}
        self.checked: set[int] = set()
        self.failure: str | None = None

    def add(self, n: int, replay) -> None:
        self.replays[n] = replay

    def step(self, n: int) -> None:
        """One decode step for rows [0, n): the bucket's replay (checked the first time), or
        the eager step where no graph is held."""
        replay = self.replays.get(n)
        if replay is None:
            self.eager(n)
        elif not self.verify or n in self.checked:
            replay()
        else:
            self._first_replay(n, replay)

    def _first_replay(self, n: int, replay) -> None:
        cur0, pos0 = self.cur[:n].clone(), self.pos[:n].clone()
        replay()
        got_cur, got_pos = self.cur[:n].clone(), self.pos[:n].clone()
        self.cur[:n].copy_(cur0)
        self.pos[:n].copy_(pos0)
        self.eager(n)
        wrong = (got_cur != self.cur[:n]) | (got_pos != self.pos[:n])
        bad = int(wrong.sum())
        if bad == 0:
            self.checked.add(n)
            return
        self.drop(f"the captured step for {n} rows disagreed with the eager step on {bad} "
                  f"row(s) (first: row {int(wrong.nonzero()[0, 0])})")

    def drop(self, reason: str) -> None:
        """Stop replaying: warn with `reason`, keep it in `failure`, decode eagerly."""
        self.failure = reason
        self.replays.clear()
        warnings.warn(f"CUDA graph of the decode step: {reason}; decoding without graphs",
                      GraphVerificationWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------
# Decode state: cache + step buffers (+ CUDA graphs), reused across batches


class DecodeState:
    """Buffers for decoding up to `capacity` rows of a model with `slots` cache slots.

    cur (cap,) int64: each row's input token; pos (cap,) int64: its position (= write slot);
    hist (cap, steps) int64: the token each step produced. `step(n)` runs one decode step for
    rows [0, n): backbone on (cur, pos), argmax head, cur <- next token, pos <- pos + 1
    (clamped to the last slot so finished rows riding along stay in bounds). `options` gives
    the mask kind, the step head (`screened_head`) and CUDA graphs. verify: check the Triton
    head (`kernels.verify`) and each graph's first replay (`CheckedReplays`) against their
    eager twins; False for benchmarks.
    """

    def __init__(self, sm, layers, capacity: int, slots: int, steps: int, masked_token,
                 options: DecodeOptions = DecodeOptions(), *, min_bucket: int = 16,
                 verify: bool = True):
        dev, dtype = sm.device, layers[0].keys.dtype
        self.sm, self.masked_token, self.steps = sm, masked_token, steps
        keys = [torch.zeros((capacity, lay.keys.shape[1], slots, lay.keys.shape[3]),
                            dtype=dtype, device=dev) for lay in layers]
        values = [torch.zeros((capacity, lay.values.shape[1], slots, lay.values.shape[3]),
                              dtype=dtype, device=dev) for lay in layers]
        self.cache = PositionalCache(keys, values)
        self.cur = torch.zeros(capacity, dtype=torch.int64, device=dev)
        self.pos = torch.zeros(capacity, dtype=torch.int64, device=dev)
        self.hist = torch.zeros((capacity, max(1, steps)), dtype=torch.int64, device=dev)
        self.slot_ids = torch.arange(slots, device=dev)
        self.kind = mask_kind(sm.model, options.mask)
        self.act_dtype = dtype
        self.screen = _screened_head(sm, dtype, options.screened_head)
        self.verify = verify
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.replays = CheckedReplays(self._eager_step, self.cur, self.pos, verify=verify)
        self.use_graphs = options.cuda_graphs and dev.type == "cuda"
        self.use_buckets = self.use_graphs      # tests may force buckets on without graphs
        buckets = {capacity}
        b = min_bucket
        while b < capacity:
            buckets.add(b)
            b *= 2
        self.buckets = sorted(buckets)
        self.key = self.signature(sm, layers, capacity, slots, steps, masked_token, options)
        if self.use_graphs:
            self._capture()

    @staticmethod
    def signature(sm, layers, capacity, slots, steps, masked_token, options: DecodeOptions
                  ) -> tuple:
        """What a state is built for; `DecodeWorkspace` reuses a state whose signature matches
        in everything but capacity (index 4), which may be larger."""
        shapes = tuple((lay.keys.shape[1], lay.keys.shape[3], lay.values.shape[1],
                        lay.values.shape[3]) for lay in layers)
        attn = getattr(sm.model.config, "_attn_implementation", None)
        graphs = options.cuda_graphs and sm.device.type == "cuda"
        return (id(sm.model), str(sm.device), layers[0].keys.dtype, shapes, capacity, slots,
                steps, masked_token, options.mask, graphs, attn, options.screened_head)

    @property
    def capacity(self) -> int:
        return self.cur.shape[0]

    @property
    def slots(self) -> int:
        return self.slot_ids.shape[0]

    def bucket(self, n: int) -> int:
        """Rows to run for n live rows: n itself, or with graphs the smallest bucket >= n."""
        if not self.use_buckets:
            return n
        return next(b for b in self.buckets if b >= n)

    def _eager_step(self, n: int) -> None:
        from kernels.argmax_head import argmax_head

        sm = self.sm
        pos = self.pos[:n]
        self.cache.use_rows(n, pos)
        out = sm.backbone(self.cur[:n, None], past_key_values=self.cache, use_cache=True,
                          attention_mask=step_mask(self.kind, self.slot_ids, pos, self.act_dtype),
                          position_ids=pos[:, None])
        hidden = out.hidden[:, -1]
        opts = dict(logit_scale=sm.logit_scale, softcap=sm.softcap, masked_token=self.masked_token)
        if self.screen is None:
            nxt = argmax_head(hidden, sm.weight, bias=sm.bias, verify=self.verify, **opts)
        else:
            nxt = self.screen(hidden, **opts)      # its own bf16 copy of sm.weight / sm.bias
        self.cur[:n].copy_(nxt)
        pos.add_(1).clamp_(max=self.slots - 1)

    def step(self, n: int) -> None:
        """One decode step for rows [0, n) (n must be a bucket when graphs are on): the
        bucket's graph (its first replay checked against the eager step), else eagerly."""
        self.replays.step(n)
        if self.replays.failure is not None and self.use_graphs:
            self.graphs.clear()
            self.use_graphs = self.use_buckets = False

    def _capture(self) -> None:
        """Capture one graph per bucket (largest first, one shared memory pool) on the zeroed
        buffers, before any batch is loaded (warm-up steps write into them). On failure, warn
        and decode eagerly."""
        try:
            pool = None
            side = torch.cuda.Stream(self.cur.device)
            side.wait_stream(torch.cuda.current_stream(self.cur.device))
            with torch.cuda.stream(side):
                for n in reversed(self.buckets):
                    self._eager_step(n)                       # warm-up (Triton compile, cuBLAS)
                    self._eager_step(n)
            torch.cuda.current_stream(self.cur.device).wait_stream(side)
            for n in reversed(self.buckets):
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool):
                    self._eager_step(n)
                pool = g.pool() if pool is None else pool
                self.graphs[n] = g
                self.replays.add(n, g.replay)
            torch.cuda.synchronize(self.cur.device)
        except Exception as exc:  # noqa: BLE001 - any capture failure: fall back, don't fail
            warnings.warn(f"CUDA graph capture of the decode step failed ({exc!r}); decoding "
                          "without graphs", RuntimeWarning, stacklevel=3)
            self.graphs.clear()
            self.replays.replays.clear()
            self.use_graphs = self.use_buckets = False
        self.cur.zero_()
        self.pos.zero_()


def _screened_head(sm, act_dtype: torch.dtype, setting: str):
    """The ScreenedHead this model's decode steps use under `setting`
    (`DecodeOptions.screened_head`), or None for the plain fp32 argmax head."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"screened_head must be 'auto', 'on' or 'off', got {setting!r}")
    from kernels.argmax_head_screened import ScreenedHead, bf16_is_fast

    usable = (sm.device.type == "cpu" and sm.weight.dtype == torch.float32
              and act_dtype == torch.float32 and sm.softcap is None)
    if not usable or setting == "off" or (setting == "auto" and not bf16_is_fast()):
        return None
    return ScreenedHead(sm.weight, sm.bias)


class DecodeWorkspace:
    """The owner of the lean loop's reusable `DecodeState` (buffers, positional cache, CUDA
    graphs). `engine.score` makes one per run, so the state outlives a batch; a caller that
    scores the same model again (a benchmark's rounds) may pass its own to keep the state (and
    captured graphs) across runs. Nothing is stored on the model.
    """

    def __init__(self) -> None:
        self.state: DecodeState | None = None

    def state_for(self, sm, layers, capacity: int, slots: int, steps: int, masked_token,
                  options: DecodeOptions = DecodeOptions(), *, verify: bool = True
                  ) -> DecodeState:
        """A `DecodeState` for these shapes: the held one while it fits (same signature, enough
        rows), else a new one (the old buffers are freed first). verify: as for
        `DecodeState` (a held state keeps its own setting)."""
        key = DecodeState.signature(sm, layers, capacity, slots, steps, masked_token, options)
        st = self.state
        if st is not None and st.key[:4] == key[:4] and st.key[5:] == key[5:] and (
                st.capacity >= capacity):
            return st
        self.state = None
        self.state = DecodeState(sm, layers, capacity, slots, steps, masked_token, options,
                                 verify=verify)
        return self.state

    def clear(self) -> None:
        """Drop the held state (its buffers and graphs)."""
        self.state = None
