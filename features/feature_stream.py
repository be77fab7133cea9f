"""The per-chunk work of `features.compute`: text features in a process pool, index counts and
token frequencies in the calling process. `features.pipeline` runs it over a sample source;
`features.distributed` runs the same chunk code inside Ray tasks. Both import it from here.
`profile` ("default" | "paper") picks each feature's definition (`features.pipeline`).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from engine.profiles import check_profile
from features import code_score as _code
from features import compression as _comp
from features import duplicates as _dups
from features import templating as _tmpl
from features import token_stats as _tstats
from features.tokenizers import decode_batch, load_tokenizer, vocab_size

__all__ = ["text_features", "FeatureStream", "select_rows"]


def text_features(text: str, profile: str = "default") -> tuple[float, float, bool, bool, float]:
    """(huffman_code_length, zlib_ratio, is_incrementing, is_repeating, code_score) of a text;
    `profile="paper"`: the paper's templating tests and its code/natural-language band."""
    inc, rep = _tmpl.classify(text, profile)
    code = _code.code_score(text)
    if profile == "paper":
        code = _code.paper_band(code)
    return (_comp.huffman_code_length(text), _comp.zlib_ratio(text), inc, rep, code)


def _text_chunk(texts: list[str], profile: str = "default") -> list[tuple]:
    return [text_features(t, profile) for t in texts]


def _vocab_declared(index) -> bool:
    """Whether the index was built for a stated vocabulary (else it knows only the ids its
    corpus holds). Objects without that metadata are taken as declared (strict)."""
    meta = getattr(index, "meta", None) or {}
    return bool(meta.get("vocab_size_declared", True))


def _unigrams(index, tok) -> np.ndarray:
    """Corpus unigram counts long enough for every id the samples may hold; refuses a tokenizer
    whose vocabulary the index's declared vocabulary cannot hold."""
    counts = np.asarray(index.unigram_counts(), dtype=np.int64)
    declared = _vocab_declared(index)
    if tok is not None:
        v = vocab_size(tok)
        if v > counts.shape[0]:
            if declared:
                raise ValueError(
                    f"the tokenizer has {v} ids but the corpus index was built for a vocabulary "
                    f"of {counts.shape[0]} (different tokenizers?)"
                )
            counts = np.concatenate([counts, np.zeros(v - counts.shape[0], np.int64)])
    return counts


def _index_tokenizer(index, tok):
    """The index's tokenizer fingerprint when both sides name one: checked once here, then
    passed as a plain string to every `count` call (cheap)."""
    recorded = getattr(index, "tokenizer", None)
    if tok is None or not isinstance(recorded, str) or not hasattr(tok, "get_vocab"):
        return None
    from features.index import tokenizer_fingerprint

    mine = tokenizer_fingerprint(tok)
    built = recorded
    if not recorded.startswith("sha256:"):
        # an index that recorded a tokenizer's name (as `memtax index build` once did): compare
        # the vocabulary that name stands for
        try:
            built = tokenizer_fingerprint(load_tokenizer(recorded))
        except (ValueError, OSError):
            return recorded
    if mine != built:
        raise ValueError(
            f"the tokenizer's vocabulary ({mine[:20]}...) differs from the one the corpus index "
            f"was built with ({recorded[:20]}...)"
        )
    return recorded


def select_rows(ids: np.ndarray, tokens: np.ndarray, wanted_sorted: np.ndarray | None):
    if wanted_sorted is None:
        return ids, tokens
    pos = np.searchsorted(wanted_sorted, ids)
    pos[pos == wanted_sorted.size] = 0
    keep = wanted_sorted[pos] == ids if wanted_sorted.size else np.zeros(ids.shape, bool)
    return ids[keep], tokens[keep]


class FeatureStream:
    """The per-chunk features of `compute`: text features in a process pool, index counts and
    token frequencies here, and (for the semantic step) every decoded text and prompt.

    Text results of chunk k are collected after chunk k+1 is submitted, so the workers never
    wait while this process decodes and counts. `parts` maps each column to its chunks' arrays.
    `profile`: "default" or "paper" (the paper's decoding cleanup, templating tests, code band,
    duplicate counts and percentiles).
    """

    def __init__(self, index, tok, *, prefix_len: int, workers: int, keep_text: bool,
                 profile: str = "default"):
        self.index, self.tok, self.prefix_len = index, tok, prefix_len
        self.workers, self.keep_text = workers, keep_text
        self.profile = check_profile(profile)
        self.clean_up = self.profile == "paper"  # Hugging Face's decode cleanup (the paper's)
        # vocabulary checks first: a mismatch fails before any worker starts
        self.unigrams = _unigrams(index, tok) if index is not None else None
        self.idx_tok = _index_tokenizer(index, tok) if index is not None else None
        self.parts: dict[str, list[np.ndarray]] = {"sample_id": []}
        self.texts: list[str] = []
        self.prompts: list[str] = []
        self.pending: list = []
        self.pool = None

    def run(self, source, table_ids: np.ndarray | None, chunk_size: int, progress: bool) -> None:
        """Every chunk of `source` (only the rows of `table_ids` when given)."""
        from tqdm.auto import tqdm

        wanted = np.sort(table_ids) if table_ids is not None else None
        if self.tok is not None and self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=_mp_context())
            self.pool.submit(_noop).result()  # start the workers now, before the tokenizer's threads
        bar = tqdm(total=len(source), desc="features", unit="samples", unit_scale=True,
                   disable=not progress, leave=False)
        try:
            for ids, tokens in source.batches(chunk_size):
                bar.update(len(ids))
                ids, tokens = select_rows(ids, tokens, wanted)
                if ids.size:
                    self._add_chunk(ids, tokens)
                while len(self.pending) > 1:
                    self._collect(self.pending.pop(0))
            while self.pending:
                self._collect(self.pending.pop(0))
        finally:
            bar.close()
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)

    def _add_chunk(self, ids: np.ndarray, tokens: np.ndarray) -> None:
        self.parts["sample_id"].append(ids)
        if self.tok is not None:
            self._submit_text(tokens)
        if self.index is not None:
            self._count(tokens)

    def _submit_text(self, tokens: np.ndarray) -> None:
        full = decode_batch(self.tok, tokens, clean_up_spaces=self.clean_up)
        if self.keep_text:
            self.texts.extend(full)
            self.prompts.extend(decode_batch(self.tok, tokens[:, : self.prefix_len],
                                             clean_up_spaces=self.clean_up))
        if self.pool is not None:
            step = -(-len(full) // (4 * self.workers))
            self.pending.append(("futures", [
                self.pool.submit(_text_chunk, full[i:i + step], self.profile)
                for i in range(0, len(full), step)]))
        else:
            self.pending.append(("rows", _text_chunk(full, self.profile)))

    def _count(self, tokens: np.ndarray) -> None:
        index = self.index
        for k, v in _dups.duplicate_counts(index, tokens, prefix_len=self.prefix_len,
                                           tokenizer=self.idx_tok, profile=self.profile).items():
            self.parts.setdefault(k, []).append(v)
        hi = int(tokens.max())
        if hi >= self.unigrams.size and not _vocab_declared(index):
            # The index only knows the ids its corpus holds: a larger id is unseen (0).
            self.unigrams = np.concatenate([self.unigrams, np.zeros(hi + 1 - self.unigrams.size,
                                                                    np.int64)])
        for k, v in _tstats.token_frequency_stats(tokens, self.unigrams,
                                                  profile=self.profile).items():
            self.parts.setdefault(k, []).append(v)

    def _collect(self, job) -> None:
        kind, payload = job
        rows = [r for f in payload for r in f.result()] if kind == "futures" else payload
        cols = list(zip(*rows)) if rows else [()] * 5
        inc = np.array(cols[2], dtype=bool)
        rep = np.array(cols[3], dtype=bool)
        for k, v in (("huffman_code_length", np.array(cols[0], dtype=np.float64)),
                     ("zlib_ratio", np.array(cols[1], dtype=np.float64)),
                     ("is_incrementing", inc), ("is_repeating", rep),
                     ("is_templating", inc | rep),
                     ("code_score", np.array(cols[4], dtype=np.float64))):
            self.parts.setdefault(k, []).append(v)


def _mp_context():
    import multiprocessing as mp

    # Workers run only pure-Python text code. "fork" starts them at once and, unlike "spawn",
    # does not re-import the caller's main script (which breaks scripts without a __main__
    # guard); the pool is started before any decoding so no Rust/OpenMP pool is running yet
    # in this call. Where fork is unavailable, spawn.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _noop() -> None:
    return None


