"""memtax: measure and explain what a causal language model memorized from its training data."""

from setuptools import find_packages, setup

# torch is pinned: on the project's machines `torch==2.13.0` resolves to the CPU wheel on local
# disk, while an unpinned torch would pull a multi-GB CUDA build. On a GPU machine install the
# CUDA build of the same version first; pip then keeps it.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "transformers>=5.24,<5.25",
    "safetensors>=0.4",
    "accelerate>=1.0",
    "gguf>=0.10",
    "numpy>=1.26",
    "pyarrow>=15",
    "numba>=0.60",
    "tqdm>=4.66",
    "triton>=3.2",
    "rapidfuzz>=3.0",
    "faiss-cpu>=1.8",
    "sentence-transformers>=3.0",
    "scipy>=1.11",
    "statsmodels>=0.14",
    "scikit-learn>=1.4",
    "matplotlib>=3.8",
    "pandas>=2.1",
]

# The top-level packages users import, each with all its subpackages. find_packages walks the tree,
# so a new subpackage (features.index, memtax.commands) ships without being listed by hand.
PACKAGES = [f"{top}{sub}" for top in ("memtax", "engine", "kernels", "features", "analysis")
            for sub in ("", ".*")]

EXTRAS = {
    "test": [
        "pytest>=8",
        "pytest-benchmark>=4",
        "pytest-timeout>=2.3",
        "hypothesis>=6.100",
        "pydivsufsort>=0.0.20",
        # the wheel-install test builds the wheel with this environment's own setuptools
        "setuptools>=68",
        "wheel>=0.40",
    ],
    "lint": ["ruff>=0.6", "import-linter>=2.0"],
    "ray": ["ray>=2.9"],
    # Anchors that benchmarks run side by side with memtax (tokengrams, infini-gram).
    "anchors": ["tokengrams>=0.3.3", "infini-gram>=2.6"],
}
EXTRAS["dev"] = EXTRAS["test"] + EXTRAS["lint"] + EXTRAS["ray"]

setup(
    name="memtax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=PACKAGES),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["memtax=memtax.cli:main"]},
)
