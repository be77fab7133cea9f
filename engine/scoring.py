"""`engine.score` (this module is `engine.scoring`): exact 32-extractable memorization and perplexities in one teacher-forced pass.

For a sample of L = P + C tokens (P = prefix_len, C = cont_len) the backbone runs once over
tokens 0..L-2; the head at position t predicts token t+1. Greedy decoding from the prompt
equals the teacher-forced argmax up to and including the first mismatch, so

    pred[j]     = argmax at position P-1+j (EOS excluded, as Pythia's min_length did)
    correct[j]  = pred[j] == token[P+j]                       j = 0..C-1
    match_len   = leading run of `correct`;  exact_match = match_len == C
    tf_accuracy = mean(correct)    (teacher-forced accuracy, not Pythia's free-running score)

and, from the model's own (unmasked) log-probs lp[t] = log p(token[t+1] | tokens[:t+1]):

    prompt_nll = -mean(lp[0 : P-1])   cont_nll = -mean(lp[P-1 : L-1])   seq_nll = -mean(lp)
    *_ppl      = exp(*_nll)
    *_ppl_paper = exp(-sum(lp over the span) / (L-1))   (the paper's quirk: every span over 63,
                                                         so seq_ppl_paper = prompt x cont)

With profile="paper" the `*_ppl_paper` columns follow the paper's code exactly
(`engine.perplexities.paper_perplexities`: the count of token id 0 in the sample shortens the window from its end
and moves the prompt/continuation split); every other column is the same in both profiles.

The head never materialises (B, T, V) logits: `kernels.fused_head` reduces argmax, log-sum-exp
and the target logit chunk by chunk over the vocabulary.

Output: a `pyarrow.Table` in sample order; with `out=` also a folder of parquet shards with a
manifest (see `engine.output`), resumable, and split across ranks under torchrun.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import torch

from engine import distributed as dist
from engine.data import SampleSource, open_samples
from engine.device import is_oom
from engine.fingerprint import model_fingerprint, rows_sha256, samples_fingerprint, update_rows
from engine.models import ScoringModel, dtype_name, load_model, resolve_device, resolve_dtype
from engine.options import DecodeOptions
from engine.output import ScoreFolder, check_writable
from engine.perplexities import perplexity_columns
from engine.profiles import check_profile, profile_metadata

__all__ = ["score", "score_batch", "SCORE_SCHEMA", "DEFAULT_SHARD_SIZE"]

SCORE_SCHEMA = pa.schema([
    ("sample_id", pa.int64()),
    ("exact_match", pa.bool_()),
    ("match_len", pa.int16()),
    ("tf_accuracy", pa.float32()),
    ("prompt_nll", pa.float32()),
    ("cont_nll", pa.float32()),
    ("seq_nll", pa.float32()),
    ("prompt_ppl", pa.float32()),
    ("cont_ppl", pa.float32()),
    ("seq_ppl", pa.float32()),
    ("prompt_ppl_paper", pa.float32()),
    ("cont_ppl_paper", pa.float32()),
    ("seq_ppl_paper", pa.float32()),
])
DEFAULT_SHARD_SIZE = 65536
# Rows of hidden states reduced per fused-head call on CPU. Smaller blocks (256 rows, tiles
# that fit in cache) were 2-4x slower on the shared 2-core machine: every small op pays an
# OpenMP barrier, and under load a barrier costs a time slice (docs/notes/engine.md).
CPU_HEAD_ROWS = 2048
CPU_AUTO_BATCH = 64


# ---------------------------------------------------------------------------------------------
# One batch


def score_batch(sm: ScoringModel, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                masked_token: int | None, impl: str = "auto",
                profile: str = "default") -> dict[str, np.ndarray]:
    """Score columns (without sample_id) for tokens (B, L = prefix_len + cont_len) int64.

    Returns numpy arrays of length B keyed by the `SCORE_SCHEMA` names. The caller validates ids.
    """
    return _score_batch(sm, tokens, prefix_len=prefix_len, cont_len=cont_len,
                        masked_token=masked_token, impl=impl, profile=check_profile(profile))[0]


def _score_batch(sm: ScoringModel, tokens: torch.Tensor, *, prefix_len: int, cont_len: int,
                 masked_token: int | None, impl: str = "auto", keep_cache: bool = False,
                 verify: bool = True, profile: str = "default"):
    """(columns, tf_argmax (B, C) int64, KV cache over tokens[:, :L-1] or None)."""
    b, L = tokens.shape
    p, c = prefix_len, cont_len
    out = sm.backbone(tokens[:, : L - 1], use_cache=keep_cache)
    hidden = out.hidden                                                       # (B, L-1, d)
    d = hidden.shape[-1]
    targets = tokens[:, 1:]                                                   # (B, L-1)
    argmax, _, lp = sm.head(hidden.reshape(-1, d), targets.reshape(-1), masked_token=masked_token,
                            impl=impl, cpu_block_rows=CPU_HEAD_ROWS, verify=verify)
    argmax, lp = argmax.view(b, L - 1), lp.view(b, L - 1).double()
    tf_argmax = argmax[:, p - 1 :]                                            # (B, C)
    correct = tf_argmax == tokens[:, p:]
    match_len = (correct.cumprod(dim=1)).sum(dim=1)
    cols = {
        "exact_match": match_len == c,
        "match_len": match_len.to(torch.int16),
        "tf_accuracy": correct.double().mean(1),
        **perplexity_columns(lp, tokens, prefix_len=p, profile=profile),
    }
    res = {}
    for k, v in cols.items():
        v = v.cpu()
        res[k] = v.numpy() if v.dtype in (torch.bool, torch.int16) else v.float().numpy()
    return res, tf_argmax, out.past_key_values


# ---------------------------------------------------------------------------------------------
# Batch size


def _auto_batch_size(sm: ScoringModel, seq_len: int) -> int:
    """A first guess; `_run_batches` halves it on out-of-memory. On CUDA: free memory over an
    estimate of one row's activations (hidden states, MLP, attention and head tiles)."""
    if sm.device.type != "cuda":
        return CPU_AUTO_BATCH
    free, _ = torch.cuda.mem_get_info(sm.device)
    cfg = sm.model.config
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or (
        4 * sm.hidden_size)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 16)
    per_row = seq_len * (6 * sm.hidden_size + 2 * inter + 2 * heads * seq_len) * 4 + seq_len * 64
    return int(max(1, min(4096, 2 ** int(math.log2(max(1, 0.5 * free / per_row))))))


# ---------------------------------------------------------------------------------------------
# The run


def _validate_ids(tokens: np.ndarray, ids: np.ndarray, vocab: int) -> None:
    bad = tokens >= vocab
    if bad.any():
        r, c = (int(x[0]) for x in np.nonzero(bad))
        raise ValueError(
            f"token id {int(tokens[r, c])} (sample_id {int(ids[r])}, position {c}) is outside "
            f"the model's vocabulary: expected ids in [0, {vocab})"
        )


def _short_name(name: str | None, width: int = 32) -> str:
    """A model name fit for a progress bar: a path's last component(s), not its start."""
    name = str(name or "model").rstrip("/")
    if len(name) > width:
        name = "…" + name[-(width - 1):]
    return name


class _Progress:
    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="samples", unit_scale=True,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _memtax_version() -> str:
    # engine may not import the memtax package (layers), so ask the installed distribution.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memtax")
    except PackageNotFoundError:
        return "unknown"


def _run_metadata(sm: ScoringModel, run: dict) -> dict[bytes, bytes]:
    """The schema metadata: the model's, the run's (its profile under `PROFILE_KEY`, as every
    stage records it) and the versions."""
    import transformers

    meta = {**sm.metadata(), **{k: str(v) for k, v in run.items() if k != "profile"},
            "memtax_version": _memtax_version(), "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}
    return {**{k.encode(): str(v).encode() for k, v in meta.items()},
            **profile_metadata(run["profile"])}


@dataclasses.dataclass
class _Run:
    """One scoring run, set up and validated: what the shard loop and the output step share."""

    sm: ScoringModel
    source: SampleSource
    schema: pa.Schema
    score_rows: Callable[[torch.Tensor], dict[str, np.ndarray]]
    shard_size: int
    folder: ScoreFolder | None
    rank: int
    world: int
    # which implementations have scored so far (kernels.verify), as schema metadata
    impl_notes: Callable[[], dict[bytes, bytes]] = dict

    def noted(self, schema: pa.Schema) -> pa.Schema:
        return schema.with_metadata({**(schema.metadata or {}), **self.impl_notes()})

    @property
    def n_shards(self) -> int:
        return (len(self.source) + self.shard_size - 1) // self.shard_size

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min(len(self.source), (k + 1) * self.shard_size)

    def rows_in(self, shards) -> int:
        return sum(stop - start for start, stop in map(self.bounds, shards))


def score(
    model,
    samples,
    *,
    prefix_len: int = 32,
    cont_len: int = 32,
    mode: str = "exact",
    batch_size: int | str = "auto",
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
    out=None,
    resume: bool = True,
    progress: bool = True,
    mask_eos: bool = True,
    revision: str | None = None,
    tokenizer=None,
    range: tuple[int, int] | None = None,
    limit: int | None = None,
    checkpoint: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    trust_remote_code: bool = False,
    head_impl: str = "auto",
    on_batch: Callable[[int], None] | None = None,
    labels_only: bool = False,
    keep_tokens: bool = False,
    decode: DecodeOptions | None = None,
    decode_workspace=None,
    allow_missing_weights: bool = False,
    verify: bool = True,
    profile: str = "default",
) -> pa.Table:
    """Score every sample for memorization; one row per sample, in sample order.

    model: anything `engine.load_model` takes (HF id / folder with optional `@revision`, a GGUF
        file, a loaded PreTrainedModel, a ScoringModel).
    samples: anything `engine.open_samples` takes (2-D array, .npy, .bin/.idx, .parquet,
        .jsonl/.txt with `tokenizer`, a SampleSource); `range`, `limit`, `checkpoint` select rows.
    mode: "exact" (one pass) or "generate" (adds `gen_score`, Pythia's free-running score).
    batch_size: rows per forward pass, or "auto" (a guess that halves on out-of-memory).
    dtype: "fp32", "fp16", "bf16", or "auto" (`engine.device.auto_dtype`): on CPU a loaded
        model's own dtype, else fp32 (both profiles); on CUDA fp16 in the paper profile (as
        Pythia's evaluation), else a loaded model's own 16-bit dtype, the 16-bit torch_dtype
        the checkpoint's config declares (fp16 for Pythia), or bf16. A model passed in is never
        changed: a cast or move works on a copy (one more model in memory), and its train/eval
        mode is restored afterwards. mask_eos: exclude the config's EOS id from the argmax
        (Pythia's min_length); NLLs always use the unmasked distribution.
    profile: "default" or "paper" (`engine.profiles`): the paper profile computes the
        `*_ppl_paper` columns exactly as the paper's code (`paper_perplexities`) and makes
        dtype "auto" fp16 on CUDA; recorded in the schema metadata (`memtax.profile`) and the
        folder's manifest (a resumed run under another profile is refused).
    out: a folder for parquet shards of `shard_size` rows + manifest.json (checked writable
        before the model loads); `resume=True` keeps the shards a killed run of the same run
        left, once each checks out (file checksum, its sample rows re-read); a folder of
        another run (other weights or samples by content, other settings) is refused, naming
        what differs. Under torchrun each rank scores shards k % world == rank; every rank
        returns the whole table.
    allow_missing_weights: score a checkpoint whose weights leave parameters uninitialised
        (by default refused, naming the tensors).
    on_batch: called with the number of rows after every batch (progress hooks, tests).
    labels_only: only `exact_match` and `match_len` (mode='exact'), by the staged cascade of
        `engine.cascade` (rows leave at their first mismatch; same labels as the full pass).
    keep_tokens: with mode='generate', also `gen_tokens`, the greedy continuation.
    decode: `engine.options.DecodeOptions` for mode='generate' (decode loop, step head, CUDA
        graphs); they change speed, never results. decode_workspace: an
        `engine.decode_cache.DecodeWorkspace` to keep the decoder's state (and CUDA graphs)
        across runs; by default each run has its own. Nothing is stored on the model.
    verify: check the Triton heads against their torch twins and each CUDA graph's first
        replay against the eager step on first use, falling back to those on a mismatch
        (`kernels.verify`); the metadata's `head_impl` (and `decode_head_impl` in generate
        mode) says which implementation scored. False (benchmarks) skips the checks.

    Columns: see `SCORE_SCHEMA` (+ `gen_score` in generate mode); run metadata (model,
    revision, dtype, lengths, versions) is in the schema metadata.
    """
    _check_arguments(mode, batch_size, shard_size, labels_only, keep_tokens, decode)
    check_profile(profile)
    if out is not None:
        check_writable(out)
    with _modes_kept(model):
        return _score(model, samples, dict(
            prefix_len=prefix_len, cont_len=cont_len, mode=mode, dtype=dtype, device=device,
            out=out, resume=resume, mask_eos=mask_eos, revision=revision, tokenizer=tokenizer,
            range=range, limit=limit, checkpoint=checkpoint, shard_size=shard_size,
            trust_remote_code=trust_remote_code, head_impl=head_impl, labels_only=labels_only,
            keep_tokens=keep_tokens, decode=decode, decode_workspace=decode_workspace,
            allow_missing_weights=allow_missing_weights, verify=verify, profile=profile),
            batch_size, progress, on_batch)


class _modes_kept:
    """Restores the train/eval mode of every module of a model the caller passed in (scoring
    puts the model in eval mode)."""

    def __init__(self, model):
        module = getattr(model, "model", model)
        self.modes = ([(m, m.training) for m in module.modules()]
                      if isinstance(module, torch.nn.Module) else [])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for m, training in self.modes:
            m.training = training


def _score(model, samples, options: dict, batch_size, progress, on_batch) -> pa.Table:
    prefix_len, cont_len = options["prefix_len"], options["cont_len"]
    run = _set_up(model, samples, **options)
    mine = dist.my_shards(run.n_shards, run.rank, run.world)
    todo = [k for k in mine if run.folder is None or k not in run.folder.kept]
    bs = _auto_batch_size(run.sm, prefix_len + cont_len) if batch_size == "auto" else batch_size
    bar = _Progress(run.rows_in(mine), progress and run.rank == 0,
                    desc=f"scoring {_short_name(run.sm.name)}")
    bar.update(run.rows_in(k for k in mine if k not in todo))
    t0 = time.perf_counter()
    try:
        tables, done = _score_shards(run, todo, bs, bar, on_batch)
    except (ValueError, FileNotFoundError):
        if run.folder is not None:
            run.folder.cleanup_after_error()
        raise
    finally:
        bar.close()
    return _collect(run, tables, elapsed=time.perf_counter() - t0, done=done)


# ---------------------------------------------------------------------------------------------
# Setup


def _check_arguments(mode, batch_size, shard_size, labels_only, keep_tokens, decode) -> None:
    """The options that need neither the model nor the samples, checked before any loading."""
    if mode not in ("exact", "generate"):
        raise ValueError(f"mode must be 'exact' or 'generate', got {mode!r}")
    if labels_only and mode != "exact":
        raise ValueError(f"labels_only=True needs mode='exact' (it computes exact_match and "
                         f"match_len only), got mode={mode!r}")
    if keep_tokens and mode != "generate":
        raise ValueError(f"keep_tokens=True keeps mode='generate' greedy tokens, got mode={mode!r}")
    if not (batch_size == "auto" or (isinstance(batch_size, int) and not isinstance(
            batch_size, bool) and batch_size > 0)):
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if decode is not None and not isinstance(decode, DecodeOptions):
        raise ValueError(f"decode must be an engine.options.DecodeOptions, got "
                         f"{type(decode).__name__}")


def _set_up(model, samples, *, prefix_len, cont_len, mode, dtype, device, out, resume,
            mask_eos, revision, tokenizer, range, limit, checkpoint, shard_size,
            trust_remote_code, head_impl, labels_only, keep_tokens, decode,
            decode_workspace, allow_missing_weights, verify=True, profile="default") -> _Run:
    """Open the samples, join the ranks, load the model, describe the run and its output."""
    dev = resolve_device(device)
    resolve_dtype(dtype, dev, profile=profile)  # validate before any loading
    source: SampleSource = open_samples(
        samples, prefix_len=prefix_len, cont_len=cont_len, tokenizer=tokenizer, range=range,
        limit=limit, checkpoint=checkpoint,
    )
    dist.init_from_env(dev)
    rank, world = dist.rank_world()
    fingerprint = samples_fingerprint(source)
    sm = load_model(model, dtype=dtype, device=dist.local_device(dev), revision=revision,
                    trust_remote_code=trust_remote_code,
                    allow_missing_weights=allow_missing_weights, profile=profile)
    seq_len = prefix_len + cont_len
    if sm.max_positions is not None and seq_len - 1 > sm.max_positions:
        raise ValueError(
            f"prefix_len + cont_len = {seq_len} exceeds the model's {sm.max_positions} positions"
        )
    masked = sm.eos_token_id if mask_eos else None
    desc = {
        "model": sm.name, "revision": sm.revision or "", "dtype": dtype_name(sm.dtype),
        "prefix_len": prefix_len, "cont_len": cont_len, "mode": mode, "mask_eos": bool(mask_eos),
        "masked_token": -1 if masked is None else int(masked), "source": source.description,
        "n_samples": len(source), "shard_size": shard_size,
        "sample_source": json.dumps(_sample_source(source)),
        "samples_sha256": fingerprint["check_sha256"],
        "samples_check_ids": json.dumps(fingerprint["check_ids"]), "profile": profile,
    }
    if out is not None:  # the weights as scored; hashing them costs a read of the model
        desc["model_sha256"] = model_fingerprint(sm.model)
    desc.update({k: True for k, v in (("labels_only", labels_only), ("keep_tokens", keep_tokens))
                 if v})
    score_rows, fields = _row_scorer(
        sm, prefix_len=prefix_len, cont_len=cont_len, masked_token=masked, mode=mode,
        head_impl=head_impl, labels_only=labels_only, keep_tokens=keep_tokens, decode=decode,
        decode_workspace=decode_workspace, verify=verify, profile=profile)
    schema = pa.schema([SCORE_SCHEMA.field("sample_id"), *fields]).with_metadata(
        _run_metadata(sm, desc))
    def shard_rows_sha256(k: int) -> str:
        return rows_sha256(source, k * shard_size, min(len(source), (k + 1) * shard_size))

    folder = _open_folder(out, desc, resume, rank, shard_rows_sha256)
    return _Run(sm, source, schema, score_rows, shard_size, folder, rank, world,
                _impl_notes(sm, head_impl, mode))


def _sample_source(source: SampleSource) -> dict:
    """Where the samples came from, to open them again from anywhere (`memtax features`): the
    source's selection (absolute path, range, checkpoint, stride, tokenizer fingerprint, ...);
    {"kind": "array"} for samples without a file."""
    return source.selection() or {"kind": "array"}


def _row_scorer(sm, *, prefix_len, cont_len, masked_token, mode, head_impl, labels_only,
                keep_tokens, decode, decode_workspace, verify=True, profile="default"):
    """(score_rows, fields): `score_rows(tokens)` -> the columns (all but sample_id) of one
    batch of token rows (B, L) on the model's device; `fields` their schema, in order."""
    lengths = dict(prefix_len=prefix_len, cont_len=cont_len, masked_token=masked_token)
    if labels_only:  # no perplexities: the same columns in both profiles
        from engine.cascade import LABEL_FIELDS, label_columns

        return (functools.partial(label_columns, sm, impl=head_impl, verify=verify, **lengths),
                LABEL_FIELDS)
    exact_fields = [f for f in SCORE_SCHEMA if f.name != "sample_id"]
    if mode == "exact":
        def exact(tokens):
            return _score_batch(sm, tokens, impl=head_impl, verify=verify, profile=profile,
                                **lengths)[0]

        return exact, exact_fields
    from engine.decode_cache import DecodeWorkspace
    from engine.generate import gen_columns, gen_fields

    workspace = DecodeWorkspace() if decode_workspace is None else decode_workspace

    def generate(tokens):
        cols, tf_argmax, cache = _score_batch(sm, tokens, impl=head_impl, keep_cache=True,
                                              verify=verify, profile=profile, **lengths)
        cols.update(gen_columns(sm, tokens, match_len=cols["match_len"], tf_argmax=tf_argmax,
                                cache=cache, keep_tokens=keep_tokens, options=decode,
                                workspace=workspace, verify=verify, **lengths))
        return cols

    return generate, exact_fields + gen_fields(keep_tokens)


def _impl_notes(sm, head_impl: str, mode: str) -> Callable[[], dict[bytes, bytes]]:
    """Which implementation has scored so far (`kernels.verify.implementation_note`): the
    fused head's as `head_impl`, and in generate mode the decode step's argmax head's as
    `decode_head_impl` ("triton (unverified)" where it was not checked or did not run)."""
    from kernels.fused_head import head_implementation_note
    from kernels.verify import implementation_note

    def notes() -> dict[bytes, bytes]:
        dev, dt = sm.weight.device, sm.weight.dtype
        out = {"head_impl": head_implementation_note(head_impl, dev, dt)}
        if mode == "generate":
            out["decode_head_impl"] = implementation_note("argmax_head", "auto", dev, dt)
        return {k.encode(): v.encode() for k, v in out.items()}

    return notes


def _open_folder(out, desc: dict, resume: bool, rank: int, rows_sha256) -> ScoreFolder | None:
    """The output folder, prepared by rank 0 (created, or checked for resuming: kept shards
    are verified against `rows_sha256(k)`) and opened by the others once it is ready; None
    without `out`."""
    if out is None:
        return None
    folder = ScoreFolder(out, desc)
    if rank == 0:
        folder.prepare(resume=resume, rows_sha256=rows_sha256)
    dist.barrier()
    if rank != 0:
        folder.open_existing()
    return folder


# ---------------------------------------------------------------------------------------------
# The shard loop


def _score_shards(run: _Run, todo: list[int], bs: int, bar: _Progress, on_batch):
    """Score shards `todo` in order; each is written to the folder, or kept in memory without
    one. Returns ({shard: table} kept in memory, rows scored)."""
    tables: dict[int, pa.Table] = {}
    done = 0
    with torch.inference_mode():
        for k in todo:
            start, stop = run.bounds(k)
            parts = []
            rows_hash = hashlib.sha256()
            for ids, cols, batch in _scored_batches(run, start, stop, bs, rows_hash):
                bs = batch                    # after a back-off, the smaller size holds
                cols["sample_id"] = ids
                parts.append(cols)
                done += len(ids)
                bar.update(len(ids), batch=batch)
                if on_batch is not None:
                    on_batch(len(ids))
            table = pa.Table.from_pydict(
                {f.name: np.concatenate([p[f.name] for p in parts]) for f in run.schema},
                schema=run.noted(run.schema),
            )
            if run.folder is not None:
                run.folder.write_shard(k, table, start=start, stop=stop,
                                       samples_sha256=rows_hash.hexdigest())
            else:
                tables[k] = table
    return tables, done


def _scored_batches(run: _Run, start: int, stop: int, bs: int, rows_hash):
    """Yield (sample_ids, columns, batch size) for rows start:stop, `bs` rows at a time, and
    feed the rows into `rows_hash` (the shard's sample checksum, `engine.fingerprint`). On
    out-of-memory the batch size halves and the same rows are tried again (down to 1 row);
    the smaller size then holds for the rest of the run (the caller passes it on)."""
    pos = start
    while pos < stop:
        ids, toks = run.source.read(pos, min(pos + bs, stop))
        _validate_ids(toks, ids, run.sm.vocab_size)
        try:
            cols = run.score_rows(torch.from_numpy(toks).to(run.sm.device))
        except Exception as exc:  # back off on out-of-memory, then retry the rows
            if not is_oom(exc) or bs == 1:
                raise
            bs = _back_off(run.sm, bs)
            continue
        pos += len(ids)
        update_rows(rows_hash, ids, toks)
        yield ids, cols, bs


def _back_off(sm: ScoringModel, bs: int) -> int:
    """The next batch size after an out-of-memory error: half, with CUDA's cache emptied."""
    if sm.device.type == "cuda":
        torch.cuda.empty_cache()
    return max(1, bs // 2)


# ---------------------------------------------------------------------------------------------
# Output


def _collect(run: _Run, tables: dict[int, pa.Table], *, elapsed: float, done: int) -> pa.Table:
    """The whole table, in sample order: gathered from every rank's memory, or (with a folder)
    read back once rank 0 has finished the manifest. Adds `elapsed_s`, `scored_here` and, if
    this call scored anything, the implementation notes as they stand at the end."""
    if run.folder is None:
        gathered: dict[int, pa.Table] = {}
        for part in dist.all_gather_object(tables):
            gathered.update(part)
        result = pa.concat_tables([gathered[k] for k in sorted(gathered)])
    else:
        dist.barrier()
        if run.rank == 0:
            run.folder.finish(run.n_shards, run.bounds)
        dist.barrier()
        result = run.folder.read(run.n_shards)
    notes = run.impl_notes() if done else {}    # a fully resumed run keeps its shards' notes
    return result.replace_schema_metadata(
        {**(result.schema.metadata or {}), **notes, b"elapsed_s": f"{elapsed:.3f}".encode(),
         b"scored_here": str(done).encode()})
