#!/usr/bin/env python3
"""Make an ImageNet-like image tree from the real photos of a small sample.

    python3 scripts/make-imagenet-like.py --src ../shared/data/imagenet-sample \
        --out /tmp/imagenet-like --train-per-class 190 --val-per-class 10 --seed 1

The sample holds one folder per class. Every generated image of a class is
derived from that class's photos: a random crop (70-100% of the area, aspect
3:4 to 4:3), an optional mirror, a small brightness change, rescaled to one
of ImageNet's typical sizes (500x375 mostly, 375x500, 500x333, 333x500, a
few others) and saved as a JPEG at quality 93-98 with 4:2:0 or 4:4:4 chroma, which gives about 110 KB
per image, as ImageNet's training images. Like ImageNet it also holds a few
odd files: one image in 500 is greyscale, one in 2000 a CMYK JPEG, and one
in 5000 a PNG named `.JPEG`.

Layout: OUT/train/<class>/<class>_<k>.JPEG and
OUT/val/<class>/ILSVRC2012_val_<class>_<k>.JPEG (validation already sorted
into class folders, as after the usual reorganisation).

Deterministic: the same --seed and sample give the same files (byte for
byte with the same Pillow and libjpeg), whatever --jobs is: image k of class
c draws from its own random stream. Needs Pillow (`pip install pillow`).
"""

import argparse
import io
import os
import random
import sys
from multiprocessing import Pool

from PIL import Image

SIZES = [(500, 375)] * 14 + [(375, 500)] * 3 + [(500, 333), (333, 500), (500, 400), (640, 480)]

_sources = {}


def load_sources(src):
    classes = sorted(
        d for d in os.listdir(src) if not d.startswith(".") and os.path.isdir(os.path.join(src, d))
    )
    out = {}
    for c in classes:
        files = sorted(f for f in os.listdir(os.path.join(src, c)) if not f.startswith("."))
        imgs = []
        for f in files:
            with Image.open(os.path.join(src, c, f)) as im:
                imgs.append(im.convert("RGB"))
        if imgs:
            out[c] = imgs
    return out


def init(src):
    global _sources
    _sources = load_sources(src)


def make(task):
    out, split, cls, k, seed = task
    rng = random.Random(f"{seed}/{split}/{cls}/{k}")
    src = rng.choice(_sources[cls])
    w, h = src.size
    area = w * h * rng.uniform(0.7, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    cw = min(w, max(16, int(round((area * aspect) ** 0.5))))
    ch = min(h, max(16, int(round((area / aspect) ** 0.5))))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = src.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tw, th = rng.choice(SIZES)
    im = im.resize((tw, th), Image.Resampling.BICUBIC)
    gain = rng.uniform(0.85, 1.15)
    im = im.point(lambda v: min(255, int(v * gain)))
    quality = rng.randint(93, 98)
    # Flickr's JPEGs are 4:2:0 or 4:4:4 chroma, about half each.
    sub = rng.choice([0, 2])
    serial = zlib_index(split, cls, k)
    if split == "train":
        name = f"{cls}_{k}.JPEG"
    else:
        name = f"ILSVRC2012_val_{cls}_{k:05d}.JPEG"
    path = os.path.join(out, split, cls, name)
    buf = io.BytesIO()
    if serial % 5000 == 4999:
        im.save(buf, format="PNG")
    elif serial % 2000 == 1999:
        im.convert("CMYK").save(buf, format="JPEG", quality=quality, subsampling=sub)
    elif serial % 500 == 499:
        im.convert("L").save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format="JPEG", quality=quality, subsampling=sub)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def zlib_index(split, cls, k):
    # A serial number stable across runs and --jobs (not Python's salted hash).
    import zlib

    return zlib.crc32(f"{split}/{cls}/{k}".encode())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder of class folders of real photos")
    p.add_argument("--out", required=True, help="where the tree is written (must not exist)")
    p.add_argument("--train-per-class", type=int, default=190)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    if os.path.exists(a.out):
        sys.exit(f"error: {a.out} exists; choose a new folder")
    classes = sorted(load_sources(a.src))
    if not classes:
        sys.exit(f"error: {a.src} holds no class folders with images")
    tasks = []
    for split, n in (("train", a.train_per_class), ("val", a.val_per_class)):
        for c in classes:
            os.makedirs(os.path.join(a.out, split, c))
            tasks += [(a.out, split, c, k, a.seed) for k in range(n)]
    with Pool(a.jobs, initializer=init, initargs=(a.src,)) as pool:
        sizes = pool.map(make, tasks, chunksize=64)
    total = sum(sizes)
    print(
        f"wrote {len(tasks)} images ({len(classes)} classes) to {a.out}: "
        f"{total / 1e6:.1f} MB, {total / max(1, len(tasks)) / 1e3:.1f} KB per image"
    )


if __name__ == "__main__":
    main()
