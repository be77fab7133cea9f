"""Benchmarks of the per-sample features (issue 7).

Run:  .venv/bin/pytest benchmarks/bench_features.py -p no:cacheprovider --benchmark-disable-gc -q -s

Data: real text (the .py/.md/.rst/.txt files installed in the venv) tokenized with the GPT-NeoX
tokenizer; the corpus index is built over those tokens and the samples are 64-token windows of
it, so every continuation occurs at least once and the texts are prose and code, not noise.

Sizes (defaults keep it to a few minutes on 2 cores):
  MEMTAX_BENCH_SAMPLES=100000   samples for the non-semantic features (default 20000)
  MEMTAX_BENCH_SEM=2000         texts embedded with MiniLM to measure its rate (default 500)
  MEMTAX_BENCH_SEM_MATCH=100000 samples x references for the faiss + Levenshtein stage, on
                                synthetic clustered embeddings with the real prompts (default 20000)

Anchor measured in the same run: a naive per-sample loop (decode one row, the same feature
functions in one process, three `index.count` calls of one query each) on a subset; ratios are
printed beside the absolute figures. Semantic: the embedding rate is measured on MEMTAX_BENCH_SEM
texts and the 100k x 100k figure is extrapolated as 100000 / rate + the measured (or linearly
scaled) match stage; the printout says which figures are measured and which extrapolated.
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
from features.compute import text_features
from features.tokenizers import load_tokenizer

N = int(os.environ.get("MEMTAX_BENCH_SAMPLES", 20_000))
N_SEM = int(os.environ.get("MEMTAX_BENCH_SEM", 500))
N_MATCH = int(os.environ.get("MEMTAX_BENCH_SEM_MATCH", 20_000))
N_NAIVE = 1000
SITE = Path(np.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
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


def test_semantic_matches_time(benchmark, data):
    tok, idx, samples = data
    from features.tokenizers import decode_batch

    model = semantic.load_embedder()
    texts = decode_batch(tok, samples[:N_SEM])
    semantic.embed(texts[:32], model=model, progress=False)  # warm-up
    emb_t = benchmark.pedantic(lambda: semantic.embed(texts, model=model, progress=False),
                               rounds=1, iterations=1)
    t_embed = benchmark.stats.stats.median
    embed_rate = N_SEM / t_embed
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
    total_100k = 100_000 / embed_rate + t_match_100k
    print(f"\n[semantic] embed: {embed_rate:,.1f} texts/s on {N_SEM} texts (measured); "
          f"match stage {m}x{m}: {t_match:.1f} s, {int(sem.sum())} neighbour pairs, "
          f"{int(txt.sum())} textual (measured); 100k x 100k: embed {100_000 / embed_rate:,.0f} s "
          f"+ match {t_match_100k:,.0f} s = {total_100k / 60:.1f} min "
          f"({'measured' if m == 100_000 else 'match scaled quadratically'}; embed "
          f"extrapolated; target < 10 min)")
    benchmark.extra_info.update(embed_texts_per_s=embed_rate, match_seconds=t_match,
                                match_size=m, extrapolated_100k_minutes=total_100k / 60)
