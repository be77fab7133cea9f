"""The installed package, not the source tree: build the wheel, install it into a fresh virtual
environment that cannot see this checkout, and run the `memtax` command from there.

The fresh environment borrows the dependencies (torch, transformers, ...) of the environment
running the tests through a path line in a `.pth` file: that adds the folder to `sys.path` but
does not run the `.pth` files inside it, so the editable install of this checkout stays invisible
and only the wheel's copy of memtax can be imported.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("memtax", "engine", "kernels", "features", "analysis")


def _tracked_tree(dest: Path) -> Path:
    """A copy of the files git tracks (and new ones it does not ignore): what a clean clone
    holds, without build leftovers or caches."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _tracked_tree(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True,
    )
    (whl,) = out.glob("memtax-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
         str(wheel)],
        check=True, capture_output=True,
    )
    return env


def _packages_in_tree() -> set[str]:
    """Every folder with an __init__.py under the top-level packages, as a dotted name."""
    return {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_wheel_holds_every_package_and_module_of_the_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == _packages_in_tree()
    modules = {
        str(p.relative_to(ROOT))
        for top in TOP_LEVEL
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, sorted(modules - names)


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "memtax"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_installed_command_imports_from_the_wheel_not_the_checkout(fresh_env, tmp_path):
    python = fresh_env / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import memtax, engine, features; "
         "print(memtax.__file__); print(engine.__file__); print(features.__file__)"],
        cwd=tmp_path, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert len(where) == 3
    for path in where:
        assert Path(path).is_relative_to(fresh_env), path
    result = _run(fresh_env, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for sub in ("score", "index", "features", "analyze", "bench", "demo"):
        assert sub in result.stdout


def test_installed_command_scores_a_tiny_model(fresh_env, tmp_path):
    from memtax.testing import tiny_model

    model = tiny_model("gpt_neox", vocab_size=97, hidden=32, layers=1)
    model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    samples = rng.integers(1, 97, size=(6, 16), dtype=np.int64)
    np.save(tmp_path / "samples.npy", samples)
    result = _run(fresh_env, "score", "--model", "model", "--data", "samples.npy",
                  "--prefix-len", "8", "--cont-len", "8", "--out", "scores", "--quiet",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    # the oracle: the same scoring from this checkout, in process (itself checked against HF
    # generate elsewhere in the suite)
    import engine
    from engine.output import read_scores

    installed = read_scores(tmp_path / "scores").sort_by("sample_id")
    local = engine.score(model, samples, prefix_len=8, cont_len=8, progress=False)
    assert installed.column("sample_id").to_pylist() == list(range(6))
    for column in ("exact_match", "match_len"):
        assert installed.column(column).to_pylist() == local.column(column).to_pylist()
    np.testing.assert_allclose(installed.column("cont_nll").to_numpy(),
                               local.column("cont_nll").to_numpy(), rtol=1e-5)
