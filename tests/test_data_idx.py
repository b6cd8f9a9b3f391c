"""IDX / MNIST / digits loaders, on the real files in ../shared/datasets/mnist."""
from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralgraph.data import load_digits, load_fashion_mnist, load_idx, load_mnist

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
FASHION = REPO.parent / "shared" / "datasets" / "fashion_mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST IDX files not found at {MNIST}")
# sha256 of the uncompressed official train-images file (from the dataset's README)
TRAIN_IMAGES_SHA256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"


def write_idx(path: Path, arr: np.ndarray, code: int, compress: bool = False) -> None:
    """Independent IDX writer (struct-based) for round-trip tests."""
    be = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    payload = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += arr.astype(be).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@needs_mnist
def test_mnist_train_images_are_the_official_bytes():
    raw = gzip.decompress((MNIST / "train-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == TRAIN_IMAGES_SHA256
    images = load_idx(MNIST / "train-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images.reshape(-1), torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8))


@needs_mnist
def test_load_mnist_splits_ranges_and_limit():
    x, y = load_mnist(MNIST, "test", limit=300)
    assert x.shape == (300, 28, 28) and x.dtype == torch.float32 and y.shape == (300,)
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    full, _ = load_mnist(MNIST, "test")
    assert full.shape == (10000, 28, 28) and torch.equal(full[:300], x)
    xt, yt = load_mnist(MNIST, "train", limit=10)
    assert yt.tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first MNIST labels
    # a digit has ink in the middle and a blank border
    assert float(xt[:, 10:18, 10:18].mean()) > 5 * float(xt[:, :2].mean())


@needs_mnist
def test_raw_and_gzip_files_load_identically(tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((MNIST / f"{name}.gz").read_bytes()))
    a = load_mnist(tmp_path, "test", limit=50)
    b = load_mnist(MNIST, "test", limit=50)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not found at {FASHION}")
def test_fashion_mnist():
    x, y = load_fashion_mnist(FASHION, "test", limit=100)
    assert x.shape == (100, 28, 28) and y.max() <= 9


@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                        (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_all_types(tmp_path, code, dtype, compress):
    rng = np.random.default_rng(code)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    write_idx(tmp_path / "a.idx", arr, code, compress)
    out = load_idx(tmp_path / "a.idx")
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out.numpy(), arr)


def test_idx_errors_name_the_file(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    bad = tmp_path / "bad-magic.idx"
    bad.write_bytes(b"\x01\x00\x08\x03" + b"\x00" * 40)
    with pytest.raises(ValueError, match="bad-magic.idx.*magic"):
        load_idx(bad)
    trunc = tmp_path / "truncated.idx"
    write_idx(trunc, arr, 0x08)
    trunc.write_bytes(trunc.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated.idx.*21 bytes.*need 24"):
        load_idx(trunc)
    code = tmp_path / "code.idx"
    code.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="code.idx.*type code 0x07"):
        load_idx(code)
    hdr = tmp_path / "header.idx"
    hdr.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="header.idx.*truncated IDX header"):
        load_idx(hdr)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6])
    with pytest.raises(ValueError, match="broken.gz"):
        load_idx(gz)
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        load_idx(tmp_path / "missing.idx")


def test_load_mnist_checks_directory_and_consistency(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 2, 2), np.uint8), 0x08)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), 0x08, compress=True)
    with pytest.raises(ValueError, match="4 images but .*3 labels"):
        load_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 4), np.uint8), 0x08)
    with pytest.raises(ValueError, match="3-d images"):
        load_mnist(tmp_path, "test")


def test_load_digits():
    x, y = load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == torch.float32 and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
