"""Benchmarks of the per-sample features (docs/notes/features.md).

Run:  .venv/bin/pytest benchmarks/bench_features.py -p no:cacheprovider --benchmark-disable-gc -q -s

Data: real text (the .py/.md/.rst/.txt files installed in the venv) tokenized with the GPT-NeoX
tokenizer; the corpus index is built over those tokens and the samples are 64-token windows of
it, so every continuation occurs at least once and the texts are prose and code, not noise.

Sizes (defaults keep it to a few minutes on 2 cores):
  MEMTAX_BENCH_SAMPLES=100000   samples for the non-semantic features (default 20000)
  MEMTAX_BENCH_SEM=2000         texts embedded with MiniLM to measure its rate (default 500)
  MEMTAX_BENCH_SEM_MATCH=100000 samples x references for the faiss + Levenshtein stage, on
                                synthetic clustered embeddings with the real prompts (default 20000)
  MEMTAX_BENCH_SEM_REPS=3       interleaved timing runs per embedding precision (median)
  MEMTAX_BENCH_SEM_FULL=100000  also run the semantic stage end to end, measured, on that many
                                real samples (needs MEMTAX_BENCH_SAMPLES >= it; default 0 = off)
  MEMTAX_BENCH_SEM_DTYPE=auto   precision of that end-to-end run (float32, bfloat16, auto)

Anchor measured in the same run: a naive per-sample loop (decode one row, the same feature
functions in one process, three `index.count` calls of one query each) on a subset; ratios are
printed beside the absolute figures. Semantic: the embedding rates of sentence-transformers'
encode (the anchor), `semantic.embed` in float32 and in bfloat16 are measured interleaved on
MEMTAX_BENCH_SEM texts, and each one's 100k x 100k figure is extrapolated as 100000 / rate + the
measured (or quadratically scaled) match stage; the printout says which figures are measured and
which extrapolated. MEMTAX_BENCH_SEM_FULL measures the whole stage instead.
"""

import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import features
from features import CorpusIndex, semantic
from features.pipeline import text_features
from features.tokenizers import load_tokenizer

N = int(os.environ.get("MEMTAX_BENCH_SAMPLES", 20_000))
N_SEM = int(os.environ.get("MEMTAX_BENCH_SEM", 500))
N_MATCH = int(os.environ.get("MEMTAX_BENCH_SEM_MATCH", 20_000))
N_SEM_REPS = int(os.environ.get("MEMTAX_BENCH_SEM_REPS", 3))
N_SEM_FULL = int(os.environ.get("MEMTAX_BENCH_SEM_FULL", 0))
SEM_DTYPE = os.environ.get("MEMTAX_BENCH_SEM_DTYPE", "auto")
N_NAIVE = 1000
SITE = Path(np.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # Load and run both MiniLM precisions first: loaded after the corpus work below, the bf16
    # model's CPU flash-attention ran ~10x slower in this process (docs/notes/features.md).
    for dtype in ("float32", "bfloat16"):
        semantic.embed(["warm-up text"] * 4, model=semantic.load_embedder(dtype=dtype),
                       progress=False)
    tok = load_tokenizer("gpt-neox")
    need = N * 64 + 64
    files = sorted(p for ext in ("md", "rst", "txt", "py") for p in SITE.rglob(f"*.{ext}"))
    rng = np.random.default_rng(0)
    rng.shuffle(files)
    ids, have = [], 0
    for k in range(0, len(files), 256):
        texts = [p.read_text(errors="replace") for p in files[k : k + 256]]
        for enc in tok.encode_batch(texts):
            ids.append(np.asarray(enc.ids, dtype=np.uint16))
            have += len(enc.ids)
        if have >= need:
            break
    tokens = np.concatenate(ids)[:need]
    if tokens.size < need:
        pytest.skip(f"only {tokens.size} tokens of text found under {SITE}")
    root = tmp_path_factory.mktemp("bench_feat")
    t = time.perf_counter()
    idx = CorpusIndex.build(tokens, root / "index", vocab_size=tok.get_vocab_size(),
                            progress=False)
    print(f"\n[data] corpus {tokens.size} tokens, index built in {time.perf_counter() - t:.1f} s")
    samples = tokens[: N * 64].reshape(N, 64).astype(np.int64)
    return tok, idx, samples


def naive_features(tok, idx, samples):
    """The anchor: one sample at a time, no batching, no pool."""
    counts = idx.unigram_counts()
    out = []
    for row in samples:
        text = tok.decode(row.tolist(), skip_special_tokens=False)
        f = counts[row]
        out.append((
            idx.count(row[None, 32:])[0], idx.count(row[None, :32])[0], idx.count(row[None])[0],
            f.max(), f.mean(), f.min(), np.median(f), np.percentile(f, 25),
            np.percentile(f, 75), *text_features(text),
        ))
    return out


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def test_features_throughput(benchmark, data):
    tok, idx, samples = data
    cpu0 = _cpu_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = benchmark.pedantic(
            lambda: features.compute(None, samples, index=idx, tokenizer=tok, semantic=False,
                                     progress=False),
            rounds=1, iterations=1)
    t_all = benchmark.stats.stats.median
    cpu = _cpu_seconds() - cpu0
    assert feats.num_rows == N and min(feats.column("duplicates").to_pylist()) >= 1
    t = time.perf_counter()
    naive = naive_features(tok, idx, samples[:N_NAIVE])
    t_naive = time.perf_counter() - t
    # the anchor agrees with the fast path on the subset
    assert [r[0] for r in naive] == feats.column("duplicates").to_pylist()[:N_NAIVE]
    rate, naive_rate = N / t_all, N_NAIVE / t_naive
    print(f"\n[features] {N} samples (no semantic) in {t_all:.2f} s: {rate:,.0f} samples/s "
          f"(target >= 5,000); naive per-sample loop {naive_rate:,.0f} samples/s on "
          f"{N_NAIVE}; speed-up x{rate / naive_rate:.1f}; CPU time {cpu:.1f} s "
          f"({cpu / N * 1e6:.0f} us/sample), i.e. {2 * N / cpu:,.0f} samples/s on two idle "
          f"cores if perfectly parallel (an estimate for a loaded machine; load average "
          f"{os.getloadavg()[0]:.1f})")
    benchmark.extra_info.update(samples=N, samples_per_s=rate, naive_samples_per_s=naive_rate,
                                cpu_seconds=cpu)


def _interleaved_embed_rates(texts, models, reps):
    """Median texts/s of each {name: embed function}, timed A B C A B C ... so that load on the
    shared machine hits every candidate alike; the last embeddings of each are returned too."""
    times = {k: [] for k in models}
    embs = {}
    for _ in range(reps):
        for name, f in models.items():
            t = time.perf_counter()
            embs[name] = f(texts)
            times[name].append(time.perf_counter() - t)
    return {k: len(texts) / float(np.median(v)) for k, v in times.items()}, embs


def test_semantic_matches_time(benchmark, data):
    tok, idx, samples = data
    from features.tokenizers import decode_batch

    m32 = semantic.load_embedder(dtype="float32")
    m16 = semantic.load_embedder(dtype="bfloat16")
    texts = decode_batch(tok, samples[:N_SEM])
    candidates = {
        # the previous path, as an anchor: sentence-transformers' own encode, fp32, batch 64
        "st.encode fp32": lambda t: m32.encode(t, batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True),
        "float32": lambda t: semantic.embed(t, model=m32, progress=False),
        "bfloat16": lambda t: semantic.embed(t, model=m16, progress=False),
    }
    for f in candidates.values():
        f(texts[:32])  # warm-up
    rates, embs = benchmark.pedantic(
        lambda: _interleaved_embed_rates(texts, candidates, N_SEM_REPS), rounds=1, iterations=1)
    emb_t = embs["float32"]
    cos = (embs["bfloat16"] * emb_t).sum(1)
    # match stage on N_MATCH x N_MATCH: clustered unit vectors (some true neighbours) with the
    # real prompt texts of the samples, repeated to length.
    rng = np.random.default_rng(0)
    m = N_MATCH
    centers = rng.normal(size=(m // 20 + 1, emb_t.shape[1])).astype(np.float32)
    emb = centers[rng.integers(0, centers.shape[0], m)] + 0.35 * rng.normal(
        size=(m, emb_t.shape[1])).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prompts = decode_batch(tok, samples[: min(m, samples.shape[0]), :32])
    prompts = (prompts * (m // len(prompts) + 1))[:m]
    t = time.perf_counter()
    sem, txt = semantic.matches(emb, prompts, emb, prompts, exclude_self=True, progress=False)
    t_match = time.perf_counter() - t
    t_match_100k = t_match * (100_000 / m) ** 2  # all-pairs search: quadratic in the size
    how = "measured" if m == 100_000 else "scaled quadratically"
    print(f"\n[semantic] match stage {m}x{m}: {t_match:.1f} s, {int(sem.sum())} neighbour "
          f"pairs, {int(txt.sum())} textual (measured); 100k x 100k match {t_match_100k:,.0f} s "
          f"({how})")
    print(f"[semantic] embedding, {N_SEM} texts, median of {N_SEM_REPS} interleaved runs "
          f"(load average {os.getloadavg()[0]:.1f}; native bf16: {semantic.native_bf16()}); "
          f"bf16 vs fp32 cosine min {cos.min():.5f} median {np.median(cos):.6f}")
    for name, rate in rates.items():
        total = 100_000 / rate + t_match_100k
        print(f"  {name:15s} {rate:7.1f} texts/s (x{rate / rates['st.encode fp32']:.2f} of "
              f"st.encode): 100k x 100k = embed {100_000 / rate:,.0f} s (extrapolated) + "
              f"match {t_match_100k:,.0f} s = {total / 60:.1f} min (target < 10 min)")
    benchmark.extra_info.update(
        embed_texts_per_s=rates, match_seconds=t_match, match_size=m,
        bf16_min_cosine=float(cos.min()),
        extrapolated_100k_minutes={k: (100_000 / r + t_match_100k) / 60
                                   for k, r in rates.items()})


@pytest.mark.skipif(N_SEM_FULL == 0, reason="set MEMTAX_BENCH_SEM_FULL=N for the full run")
def test_semantic_end_to_end(benchmark, data):
    """Measured, not extrapolated: embed N_SEM_FULL real sample texts in MEMTAX_BENCH_SEM_DTYPE
    and count their semantic + textual matches against themselves (what `features.compute`
    does after decoding)."""
    tok, idx, samples = data
    from features.tokenizers import decode_batch

    n = N_SEM_FULL
    if samples.shape[0] < n:
        pytest.skip(f"MEMTAX_BENCH_SAMPLES={samples.shape[0]} < MEMTAX_BENCH_SEM_FULL={n}")
    texts = decode_batch(tok, samples[:n])
    prompts = decode_batch(tok, samples[:n, :32])
    dtype = semantic.resolve_dtype(SEM_DTYPE)
    model = semantic.load_embedder(dtype=dtype)
    semantic.embed(texts[:32], model=model, progress=False)  # warm-up

    def run():
        t0 = time.perf_counter()
        emb = semantic.embed(texts, model=model, progress=False)
        t1 = time.perf_counter()
        out = semantic.matches(emb, prompts, emb, prompts, exclude_self=True, progress=False)
        return out, t1 - t0, time.perf_counter() - t1

    (sem, txt), t_embed, t_match = benchmark.pedantic(run, rounds=1, iterations=1)
    total = t_embed + t_match
    print(f"\n[semantic end to end] {n} x {n}, {dtype}: embed {t_embed:.0f} s "
          f"({n / t_embed:.1f} texts/s) + match {t_match:.0f} s = {total / 60:.2f} min "
          f"(measured; target < 10 min at 100k); {int(sem.sum())} neighbour pairs, "
          f"{int(txt.sum())} textual; load average {os.getloadavg()[0]:.1f}")
    benchmark.extra_info.update(n=n, dtype=dtype, embed_seconds=t_embed, match_seconds=t_match)
