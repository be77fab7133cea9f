"""How `mode="generate"` decodes: one frozen value passed from `engine.score` down.

    from engine.options import DecodeOptions
    engine.score(model, samples, mode="generate", decode=DecodeOptions(cuda_graphs=True))

Every field changes speed only, never a result (the tests hold every combination to HF
`generate`). Nothing here reads the environment: the `memtax score` command maps its flags
(and the MEMTAX_DECODE_* variables) onto a `DecodeOptions` once, at its entry point.
"""

from __future__ import annotations

import dataclasses

__all__ = ["DecodeOptions", "DECODERS", "SCREENED_HEAD_SETTINGS", "MASKS"]

DECODERS = ("lean", "dynamic")
SCREENED_HEAD_SETTINGS = ("auto", "on", "off")
MASKS = ("auto", "4d", "2d")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """Options of the free-running decoder (`engine.generate.resume_greedy`).

    decoder: "lean" (a static cache whose slot is the position, `engine.decode_cache`; the
        default wherever the pass's cache is a plain full-attention cache) or "dynamic" (the
        pass's own DynamicCache with per-row holes). Sliding-window caches always decode in
        groups of rows on the dynamic loop.
    screened_head: the lean loop's step head on a CPU with an fp32 model: "auto" screens the
        vocabulary in bf16 where the CPU has bf16 dot products
        (`kernels.argmax_head_screened.bf16_is_fast`), "on" always, "off" never (plain fp32
        argmax head). The argmax is the same either way.
    cuda_graphs: lean loop on CUDA only: capture the decode step as CUDA graphs, one per bucket
        size, replayed for every batch. Off by default until measured on a GPU
        (benchmarks/gpu_check.sh times both).
    mask: lean loop: "auto" (a 4-D mask built by the decoder for SDPA/eager attention), "4d",
        or "2d" (HF builds the 4-D mask every step).
    compact_fraction: dynamic loop only: drop finished rows from the batch once they are at
        least this share of it (0: as soon as any row finishes).
    """

    decoder: str = "lean"
    screened_head: str = "auto"
    cuda_graphs: bool = False
    mask: str = "auto"
    compact_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name, allowed in (("decoder", DECODERS), ("screened_head", SCREENED_HEAD_SETTINGS),
                              ("mask", MASKS)):
            value = getattr(self, name)
            if value not in allowed:
                expected = ", ".join(repr(a) for a in allowed)
                raise ValueError(f"{name} must be one of {expected}, got {value!r}")
        if not isinstance(self.cuda_graphs, bool):
            raise ValueError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r}")
        frac = self.compact_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not frac >= 0:
            raise ValueError(f"compact_fraction must be a number >= 0, got {frac!r}")
