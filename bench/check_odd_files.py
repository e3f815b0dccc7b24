#!/usr/bin/env python3
"""Compares netc's records of a tree's odd files (CMYK and greyscale JPEGs,
PNGs named .JPEG) with Pillow's conversion of the same files to RGB, shorter
side to 256 (bicubic), central square:

    check_odd_files.py DATASET TREE [N]

Prints each file's mean absolute difference (0..255), which includes the
JPEG re-encoding of the record. Needs Pillow and numpy.
"""

import io
import os
import struct
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from data_peer import read_netc  # noqa: E402


def main():
    dataset, tree = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    d = read_netc(dataset)
    with open(dataset, "rb") as f:
        b = f.read()
    sec = [struct.unpack_from("<QQI", b, 48 + 24 * i) for i in range(5)]
    offs = np.frombuffer(b[sec[1][0] : sec[1][0] + sec[1][1]], dtype="<u8")
    blob = b[sec[2][0] : sec[2][0] + sec[2][1]]
    found = 0
    for i in range(len(offs) - 1):
        rel = blob[offs[i] : offs[i + 1]].decode()
        im = Image.open(os.path.join(tree, rel))
        if im.mode not in ("CMYK", "L") and im.format != "PNG":
            continue
        off, ln, _crc, _label = d["entries"][i]
        rec = np.asarray(Image.open(io.BytesIO(b[off : off + ln])).convert("RGB"), dtype=float)
        ref = im.convert("RGB")
        w, h = ref.size
        s = min(w, h)
        x0, y0 = (w - s) // 2, (h - s) // 2
        ref = ref.resize((d["size"], d["size"]), Image.Resampling.BICUBIC, box=(x0, y0, x0 + s, y0 + s))
        diff = np.abs(rec - np.asarray(ref, dtype=float)).mean()
        print(f"{rel}: {im.format} {im.mode}, mean abs difference from Pillow {diff:.2f}")
        found += 1
        if found >= limit:
            break


if __name__ == "__main__":
    main()
