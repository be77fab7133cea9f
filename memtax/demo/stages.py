"""What every demo route shares: timed stages, the output folder, parquet and JSON writing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from memtax.jsonio import json_default

# summary.json's `produced_by`: marks a folder an earlier demo wrote (and may replace).
MARKER = "memtax demo"


@dataclass
class Stage:
    """One timed stage: `amount` things of `unit` done in `seconds`."""

    name: str
    seconds: float
    amount: float
    unit: str

    @property
    def rate(self) -> float:
        return self.amount / self.seconds if self.seconds > 0 else float("inf")


class _Tally:
    """What a running stage has done so far (set `amount` inside the `with` block)."""

    amount: float = 0


class StageClock:
    """Times named stages; a stage that raises is not recorded.

        clock = StageClock()
        with clock("tokenize", "tokens") as t:
            ...
            t.amount = n_tokens
    """

    def __init__(self) -> None:
        self.stages: list[Stage] = []

    @contextlib.contextmanager
    def __call__(self, name: str, unit: str) -> Iterator[_Tally]:
        tally = _Tally()
        t0 = time.perf_counter()
        yield tally
        self.stages.append(Stage(name, time.perf_counter() - t0, tally.amount, unit))


def bar(total, desc: str, unit: str, enabled: bool, **kw):
    """A tqdm progress bar (off when `enabled` is false)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, **kw)


# --------------------------------------------------------------------------------------------
# Output folder


def check_out(out: Path, keep: tuple[str, ...] = ()) -> None:
    """Refuse a non-empty folder that is not an earlier demo output (nothing is touched).

    keep: entries that may be there alone (the suite route's `suite/`, left by an interrupted
    run: the suite builder resumes it).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    if all(p.name in keep for p in out.iterdir()):
        return
    try:
        marker = json.loads((out / "summary.json").read_text()).get("produced_by")
    except (OSError, ValueError):
        marker = None
    if marker != MARKER:
        raise FileExistsError(
            f"output folder {str(out)!r} is not empty and holds no earlier demo output "
            "(summary.json); choose another --out or remove it"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing an earlier demo output."""
    if out.exists():
        old = tmp.parent / f"{tmp.name}.old"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def staging(out: Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block ends without error and
    removed when it raises (an earlier output at `out` then stays as it was).

    keep: entries of `out` that live there during the run (the suite route builds its suite in
    `out/suite`, resumably) and are moved into the finished folder just before it replaces
    `out`.
    """
    check_out(out, keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        for name in keep:
            if (out / name).exists():
                os.replace(out / name, tmp / name)
        _publish(tmp, out)
    except BaseException:
        for name in keep:
            if (tmp / name).exists() and not (out / name).exists():
                out.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / name, out / name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def write_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, default=json_default))
