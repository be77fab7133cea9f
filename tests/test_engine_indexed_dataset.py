"""MMIDIDX reader/writer: round trip, byte layout against a hand-packed file, and clear errors on
truncated or foreign files."""

import struct

import numpy as np
import pytest

from engine.indexed_dataset import IndexedDataset, is_indexed_dataset, write_indexed_dataset


def _hand_packed(prefix, seqs, code=8, dtype=np.uint16):
    """An MMIDIDX pair written straight from the Megatron spec, independent of the writer."""
    sizes = [len(s) for s in seqs]
    pointers, off = [], 0
    for s in sizes:
        pointers.append(off)
        off += s * np.dtype(dtype).itemsize
    with open(f"{prefix}.idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", code))
        f.write(struct.pack("<Q", len(seqs)))
        f.write(struct.pack("<Q", len(seqs) + 1))
        f.write(struct.pack(f"<{len(sizes)}i", *sizes))
        f.write(struct.pack(f"<{len(sizes)}q", *pointers))
        f.write(struct.pack(f"<{len(seqs) + 1}q", *range(len(seqs) + 1)))
    with open(f"{prefix}.bin", "wb") as f:
        for s in seqs:
            f.write(np.asarray(s, dtype=dtype).tobytes())


@pytest.mark.parametrize("dtype,code", [(np.uint16, 8), (np.int32, 4), (np.int64, 5)])
def test_writer_matches_hand_packed_bytes_and_reads_back(tmp_path, dtype, code):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 60000, size=n) for n in (5, 0, 17, 3)]
    _hand_packed(tmp_path / "ref", seqs, code=code, dtype=dtype)
    write_indexed_dataset(tmp_path / "out", seqs, dtype=dtype)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"out{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    ds = IndexedDataset(tmp_path / "ref")
    assert len(ds) == 4 and ds.dtype == np.dtype(dtype)
    assert ds.sizes.tolist() == [5, 0, 17, 3]
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(ds[i], s)
    np.testing.assert_array_equal(ds.get(2, offset=4, length=6), seqs[2][4:10])
    np.testing.assert_array_equal(ds.tokens, np.concatenate(seqs))
    np.testing.assert_array_equal(ds[-1], seqs[-1])
    assert is_indexed_dataset(tmp_path / "ref") and is_indexed_dataset(tmp_path / "ref.idx")
    with pytest.raises(IndexError, match="out of range"):
        ds[4]


def test_two_d_input_and_path_forms(tmp_path):
    arr = np.arange(40, dtype=np.int64).reshape(4, 10)
    write_indexed_dataset(tmp_path / "d.bin", arr, dtype=np.uint16)
    for p in (tmp_path / "d", tmp_path / "d.bin", str(tmp_path / "d.idx")):
        np.testing.assert_array_equal(np.stack(list(IndexedDataset(p))), arr)


def test_missing_file(tmp_path):
    write_indexed_dataset(tmp_path / "d", [np.arange(3)])
    (tmp_path / "d.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"d\.bin"):
        IndexedDataset(tmp_path / "d")


def test_foreign_idx(tmp_path):
    write_indexed_dataset(tmp_path / "d", [np.arange(3)])
    (tmp_path / "d.idx").write_bytes(b"PK\x03\x04 this is a zip file, not an index")
    with pytest.raises(ValueError, match="not an MMIDIDX index"):
        IndexedDataset(tmp_path / "d")


@pytest.mark.parametrize("cut", [5, 20, 40])
def test_truncated_idx(tmp_path, cut):
    write_indexed_dataset(tmp_path / "d", [np.arange(3), np.arange(4)])
    data = (tmp_path / "d.idx").read_bytes()
    (tmp_path / "d.idx").write_bytes(data[: len(data) - cut] if cut != 5 else data[:5])
    with pytest.raises(ValueError, match="truncated|not an MMIDIDX"):
        IndexedDataset(tmp_path / "d")


def test_truncated_bin(tmp_path):
    write_indexed_dataset(tmp_path / "d", [np.arange(30), np.arange(40)])
    data = (tmp_path / "d.bin").read_bytes()
    (tmp_path / "d.bin").write_bytes(data[:-20])
    with pytest.raises(ValueError, match=r"d\.bin.*truncated"):
        IndexedDataset(tmp_path / "d")


def test_bad_version_and_dtype_code(tmp_path):
    write_indexed_dataset(tmp_path / "d", [np.arange(3)])
    data = bytearray((tmp_path / "d.idx").read_bytes())
    bad = bytearray(data)
    bad[9:17] = struct.pack("<Q", 7)
    (tmp_path / "d.idx").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="version 7"):
        IndexedDataset(tmp_path / "d")
    bad = bytearray(data)
    bad[17] = 42
    (tmp_path / "d.idx").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="dtype code 42"):
        IndexedDataset(tmp_path / "d")


def test_writer_rejects_bad_values_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="outside uint16"):
        write_indexed_dataset(tmp_path / "d", [np.arange(3), np.array([70000])], dtype=np.uint16)
    with pytest.raises(ValueError, match="integers"):
        write_indexed_dataset(tmp_path / "d", [np.array([0.5, 1.0])])
    with pytest.raises(ValueError, match="integer dtype"):
        write_indexed_dataset(tmp_path / "d", [np.arange(3)], dtype=np.float32)
    assert list(tmp_path.iterdir()) == []
