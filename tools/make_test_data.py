#!/usr/bin/env python
"""Build tests/data: the small real-data subset the test suite reads, from the full data sets.

    python tools/make_test_data.py --data ../shared/data

Writes, in the data sets' own standard forms (so the same readers serve both):
  mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz          MNIST test[0:1000], IDX
  fashion-mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz  Fashion-MNIST test[0:1000], IDX
  cifar10-jpeg/test.tar.gz                               CIFAR-10 test, the first 50 JPEGs of each class
                                                         (the original bytes, `test/<class>/NNNN.jpg`)
  photos/chelsea.png                                     one colour photo (scikit-image, CC0)
The output is byte-for-byte reproducible (gzip and tar carry no time stamps). Origin and licenses
are in tests/data/README.md, which this script does not touch.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IDX_IMAGES = 1000
CIFAR_PER_CLASS = 50


def _write_gz(path: Path, raw: bytes) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(raw)
    path.write_bytes(buf.getvalue())


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _idx_subset(src: Path, dst: Path) -> None:
    from xnorinfer.datasets import read_idx

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        _write_gz(dst / name, _idx_bytes(np.ascontiguousarray(read_idx(src / name)[:IDX_IMAGES])))


def _cifar_subset(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    members: list[tuple[str, bytes]] = []
    with tarfile.open(src / "test.tar.gz", "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and member.name.endswith(".jpg") and int(Path(member.name).stem) < CIFAR_PER_CLASS:
                members.append(("/".join(parts[-3:]), tar.extractfile(member).read()))
    members.sort()
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    (dst / "test.tar.gz").write_bytes(buf.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the full data sets (the layout of ../shared/data)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    args = parser.parse_args()
    needed = [
        args.data / "mnist" / "t10k-images-idx3-ubyte.gz",
        args.data / "fashion-mnist",
        args.data / "cifar10-jpeg" / "test.tar.gz",
        args.data / "photos" / "chelsea.png",
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(
            f"make_test_data: missing {', '.join(missing)} (see the --data layout in this script's help)",
            file=sys.stderr,
        )
        return 1
    _idx_subset(args.data / "mnist", args.out / "mnist")
    _idx_subset(args.data / "fashion-mnist", args.out / "fashion-mnist")
    _cifar_subset(args.data / "cifar10-jpeg", args.out / "cifar10-jpeg")
    (args.out / "photos").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.data / "photos" / "chelsea.png", args.out / "photos" / "chelsea.png")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
