"""Where a `memtax bench` result was measured: device, driver, versions, commit."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

import torch

from memtax.bench.shapes import peak_tflops_for

__all__ = ["environment"]


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    """A command's stripped stdout, or None when it is missing, fails or hangs."""
    try:
        res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _git(*args: str) -> str | None:
    # the checkout this package runs from (None when installed outside one)
    return _run(["git", *args], cwd=Path(__file__).resolve().parents[2])


def _nvidia_driver() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0] if out else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str = "cpu") -> dict:
    """GPU name, driver, peak, library versions, git commit: what a result needs to be read."""
    import transformers

    dev = torch.device(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # pragma: no cover - triton is a dependency
        triton_version = None
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": str(dev),
        "gpu": None, "driver": None, "cuda": torch.version.cuda, "peak_tflops": None,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "triton": triton_version,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "commit": commit, "dirty": bool(dirty) if dirty is not None else None,
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["driver"] = _nvidia_driver()
        env["gpu_memory"] = torch.cuda.get_device_properties(dev).total_memory
        env["peak_tflops"] = peak_tflops_for(env["gpu"])
    return env
