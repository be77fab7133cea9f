"""Content fingerprints: what makes two score runs the same run, whatever the paths say.

    model_fingerprint(hf_model)        -> "sha256:..." of the state dict (names, dtypes, shapes,
                                          bytes), the weights as scored (after any cast)
    samples_fingerprint(source)        -> {"check_ids": [...], "check_sha256": "..."}: the
                                          tokens of up to 64 evenly spaced rows, by sample_id
    rows_sha256(source, start, stop)   -> sha256 of rows start:stop (ids and tokens)
    check_samples(source, recorded)    -> ValueError unless `source` holds the recorded rows

A resumed run re-reads the rows of every shard it keeps and compares them with the checksum
the shard was written with (`engine.output`); the 64-row fingerprint lets `memtax features`
check, cheaply and by sample_id, that its samples are those the scores were computed on.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["model_fingerprint", "samples_fingerprint", "rows_sha256", "update_rows",
           "check_samples", "CHECK_ROWS"]

CHECK_ROWS = 64
_CHUNK = 1 << 24  # elements hashed per step (bounds the host copy of a CUDA tensor)


def model_fingerprint(model) -> str:
    """sha256 over a torch module's state dict, in name order: each entry's name, dtype, shape
    and bytes. Equal weights (in the same dtype) give equal fingerprints wherever they came from."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        flat = tensor.detach().reshape(-1)
        for s in range(0, flat.numel(), _CHUNK):
            part = flat[s : s + _CHUNK].contiguous().cpu()
            h.update(part.view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def update_rows(h, ids: np.ndarray, tokens: np.ndarray) -> None:
    """Feed rows into the hash `h`, each as its id then its tokens (int64 little-endian), so
    the checksum of a range does not depend on how it was batched."""
    rows = np.concatenate([np.asarray(ids, dtype="<i8")[:, None],
                           np.asarray(tokens, dtype="<i8")], axis=1)
    h.update(np.ascontiguousarray(rows).tobytes())


def rows_sha256(source, start: int, stop: int, batch: int = 8192) -> str:
    """sha256 of the rows start:stop of a sample source (their ids and tokens)."""
    h = hashlib.sha256()
    for s in range(start, stop, batch):
        ids, toks = source.read(s, min(s + batch, stop))
        update_rows(h, ids, toks)
    return h.hexdigest()


def _check_positions(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, CHECK_ROWS)).round().astype(np.int64))


def samples_fingerprint(source) -> dict:
    """The ids of up to `CHECK_ROWS` evenly spaced rows (first and last included) and the sha256
    of their ids and tokens."""
    h = hashlib.sha256()
    ids_out = []
    for p in _check_positions(len(source)):
        ids, toks = source.read(int(p), int(p) + 1)
        update_rows(h, ids, toks)
        ids_out.append(int(ids[0]))
    return {"check_ids": ids_out, "check_sha256": h.hexdigest()}


def _rows_by_id(source, ids: list[int]) -> dict[int, np.ndarray]:
    """Tokens of the rows with these sample ids. Sources whose ids count up by position (arrays,
    .bin/.idx ranges, text windows) are read at the guessed positions; anything else is
    streamed once."""
    found: dict[int, np.ndarray] = {}
    n = len(source)
    if n:
        first = int(source.read(0, 1)[0][0])
        for i in ids:
            p = i - first
            if 0 <= p < n:
                got_ids, toks = source.read(p, p + 1)
                if int(got_ids[0]) == i:
                    found[i] = toks[0]
    if len(found) < len(ids):
        wanted = set(ids) - set(found)
        for got_ids, toks in source.batches(8192):
            for k, i in enumerate(got_ids.tolist()):
                if i in wanted:
                    found[i] = toks[k]
                    wanted.discard(i)
            if not wanted:
                break
    return found


def check_samples(source, recorded: dict, *, what: str) -> None:
    """ValueError unless `source` holds rows with the recorded check ids whose tokens hash to
    the recorded checksum. `what` names the score run in the message."""
    ids = [int(i) for i in recorded["check_ids"]]
    found = _rows_by_id(source, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(
            f"the samples {source.description!r} are not those of {what}: they lack sample_id(s) "
            f"{missing[:5]} that the run scored"
        )
    h = hashlib.sha256()
    for i in ids:
        update_rows(h, np.array([i]), found[i][None, :])
    if h.hexdigest() != recorded["check_sha256"]:
        raise ValueError(
            f"the samples {source.description!r} are not those of {what}: the tokens of the "
            f"checked rows differ (sha256 {h.hexdigest()[:16]}... here, "
            f"{recorded['check_sha256'][:16]}... when scored); pass the samples that were scored "
            "(same file, selection, tokenizer and stride)"
        )
