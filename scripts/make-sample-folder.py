#!/usr/bin/env python3
"""Write a small image folder from the embedded Fashion-MNIST subset.

    python3 scripts/make-sample-folder.py OUT [--per-class 20] [--split test]

OUT/<class>/<k>.png, one folder per class named after the class
(t-shirt-top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag,
ankle-boot), each image a 28x28 greyscale PNG holding the IDX pixels
unchanged: the first --per-class images of each class of --split (test: the
500 test images of data/fmnist-small, 50 per class; train: the 2,000
training images). Such a folder is what `netc train --data`, `netc prepare`
and `netc predict` read, so the book's folder examples run in a clone
without downloading anything. Needs only Python's standard library.
"""

import argparse
import gzip
import os
import struct
import sys
import zlib

NAMES = ["t-shirt-top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def png_grey(width, height, pixels):
    def chunk(kind, body):
        c = kind + body
        return struct.pack(">I", len(body)) + c + struct.pack(">I", zlib.crc32(c))
    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "fmnist-small"))
    a = ap.parse_args()
    prefix = "t10k" if a.split == "test" else "train"
    (n, h, w), pixels = read_idx(os.path.join(a.data, f"{prefix}-images-idx3-ubyte.gz"))
    (_,), labels = read_idx(os.path.join(a.data, f"{prefix}-labels-idx1-ubyte.gz"))
    count = [0] * len(NAMES)
    for i in range(n):
        c = labels[i]
        if count[c] >= a.per_class:
            continue
        d = os.path.join(a.out, NAMES[c])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:05}.png"), "wb") as f:
            f.write(png_grey(w, h, pixels[i * h * w:(i + 1) * h * w]))
        count[c] += 1
    print(f"{sum(count)} images in {len(NAMES)} class folders under {a.out}")
    if min(count) < a.per_class:
        print(f"only {min(count)} images in the smallest class", file=sys.stderr)


if __name__ == "__main__":
    main()
