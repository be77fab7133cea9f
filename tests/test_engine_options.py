"""Options are parameters: `engine.options.DecodeOptions` validates its values, importing the
engine reads no MEMTAX_* variable and changes no environment variable, and scoring leaves no
attribute behind on the caller's model (the decoder's state lives in a `DecodeWorkspace`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gen_oracle import build_rows, varied_model

import engine
from engine.decode_cache import DecodeWorkspace
from engine.models import load_model
from engine.options import DecodeOptions

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kwargs,name", [
    ({"decoder": "static"}, "decoder"),
    ({"screened_head": "yes"}, "screened_head"),
    ({"mask": "3d"}, "mask"),
    ({"cuda_graphs": "1"}, "cuda_graphs"),
    ({"compact_fraction": -0.5}, "compact_fraction"),
])
def test_bad_values_are_named(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name} must .*{list(kwargs.values())[0]!r}"):
        DecodeOptions(**kwargs)


def test_options_are_frozen_values():
    opts = DecodeOptions(decoder="dynamic")
    assert opts == DecodeOptions(decoder="dynamic") and hash(opts) == hash(
        DecodeOptions(decoder="dynamic"))
    with pytest.raises(AttributeError):
        opts.decoder = "lean"


def test_score_refuses_what_is_not_decode_options():
    model = varied_model("gpt2", seed=1)
    rows = build_rows(model, prefix_len=4, cont_len=4, n_memorized=1, n_random=1)[0].numpy()
    with pytest.raises(ValueError, match="DecodeOptions, got dict"):
        engine.score(model, rows, prefix_len=4, cont_len=4, mode="generate",
                     decode={"decoder": "lean"}, progress=False)


_IMPORT_PROBE = r"""
import json, os, sys

class Recording(dict):
    def __init__(self, base):
        super().__init__(base)
        self.read = []
    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)
    def __contains__(self, key):
        self.read.append(key)
        return super().__contains__(key)

os.environ = Recording(os.environ)
before = dict(os.environ)
import engine.cascade, engine.data, engine.decode_cache, engine.distributed, engine.generate
import engine.indexed_dataset, engine.lengths, engine.model_specs, engine.models, engine.options
import engine.output, engine.scoring, engine.tokenizers
from engine.options import DecodeOptions
modules = [engine.decode_cache, engine.generate, engine.scoring]
print(json.dumps({
    "memtax_read": sorted({k for k in os.environ.read if k.startswith("MEMTAX_")}),
    "changed": sorted(k for k in set(before) | set(os.environ)
                      if before.get(k) != dict.get(os.environ, k)),
    "globals": [n for m in modules for n in ("SCREENED_HEAD", "CUDA_GRAPHS", "DECODER")
                if hasattr(m, n)],
    "defaults": [DecodeOptions().screened_head, DecodeOptions().cuda_graphs],
}))
"""


def test_importing_the_engine_reads_and_sets_no_environment_variable():
    """With the old switches set (one to a value that would have failed), importing every
    engine module reads no MEMTAX_* variable, changes no variable, and leaves the defaults."""
    env = {**os.environ, "MEMTAX_DECODE_SCREEN": "bogus", "MEMTAX_DECODE_GRAPHS": "1",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"memtax_read": [], "changed": [], "globals": [],
                   "defaults": ["auto", False]}, got


def test_scoring_adds_no_attribute_to_the_model():
    """engine.score (generate mode: the decoder's reusable state) leaves the caller's HF model
    and ScoringModel with exactly the attributes they had; the state is in the workspace."""
    model = varied_model("gpt_neox", seed=5)
    rows, _, _ = build_rows(model, n_memorized=2, n_random=3, seed=9)
    sm = load_model(model)
    hf_before, sm_before = set(vars(model)), set(vars(sm))
    ws = DecodeWorkspace()
    for target in (model, sm):
        engine.score(target, rows.numpy(), mode="generate", batch_size=8, progress=False,
                     decode_workspace=ws)
    assert set(vars(model)) == hf_before
    assert set(vars(sm)) == sm_before
    assert ws.state is not None and ws.state.sm.model is model  # the state went somewhere
