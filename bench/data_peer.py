#!/usr/bin/env python3
"""Peers for the data benchmarks (bench/data.sh runs them beside netc).

    data_peer.py prepare SRC OUT --jobs N      PIL: shorter side to 256 (bicubic), central
                                               256x256, JPEG quality 90, on N processes
    data_peer.py extract DATASET OUT           writes the JPEG records of a netc dataset as
                                               OUT/<class>/<index>.jpg (same bytes)
    data_peer.py torchvision TREE --workers N  ImageFolder + DataLoader, RandomCrop(227),
                                               RandomHorizontalFlip, ToTensor, Normalize
    data_peer.py memmap DATASET --workers N    numpy memmap over the raw records of a netc
                                               dataset in a DataLoader: random 227 crop,
                                               mirror, float32, mean subtracted

Each prints one line `PEER: N images in S s = R images/s`. The DataLoader
peers use batch 128, shuffling, and time from the first batch on (the
first is warm-up, as for netc's loader).
"""

import argparse
import json
import os
import struct
import sys
import time
from multiprocessing import Pool

HEADER = 4096


def read_netc(path):
    """Header fields, index entries and meta of a netc prepared dataset."""
    with open(path, "rb") as f:
        h = f.read(HEADER)
        if h[:8] != b"NETCDATA":
            sys.exit(f"{path}: not a netc dataset")
        fmt, _quality = h[16], h[17]
        size = struct.unpack_from("<I", h, 20)[0]
        train, val = struct.unpack_from("<QQ", h, 24)
        sec = [struct.unpack_from("<QQI", h, 48 + 24 * i) for i in range(5)]
        f.seek(sec[0][0])
        idx = f.read(sec[0][1])
        f.seek(sec[3][0])
        meta = json.loads(f.read(sec[3][1]))
    entries = [struct.unpack_from("<QIII", idx, 24 * i) for i in range(train + val)]
    return {"format": fmt, "size": size, "train": train, "val": val, "entries": entries, "meta": meta}


def prep_one(task):
    from PIL import Image

    src, dst = task
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        x0, y0 = (w - s) // 2, (h - s) // 2
        im = im.resize((256, 256), Image.Resampling.BICUBIC, box=(x0, y0, x0 + s, y0 + s))
        im.save(dst, format="JPEG", quality=90)


def cmd_prepare(a):
    tasks = []
    for split in ("train", "val"):
        root = os.path.join(a.src, split)
        for c in sorted(os.listdir(root)):
            os.makedirs(os.path.join(a.out, split, c), exist_ok=True)
            for f in sorted(os.listdir(os.path.join(root, c))):
                tasks.append((os.path.join(root, c, f), os.path.join(a.out, split, c, f)))
    t = time.perf_counter()
    with Pool(a.jobs) as p:
        p.map(prep_one, tasks, chunksize=32)
    s = time.perf_counter() - t
    print(f"PIL prepare, {a.jobs} processes: {len(tasks)} images in {s:.2f} s = {len(tasks) / s:.0f} images/s")


def cmd_extract(a):
    d = read_netc(a.dataset)
    if d["format"] != 1:
        sys.exit("extract needs a JPEG dataset")
    classes = d["meta"]["classes"]
    with open(a.dataset, "rb") as f:
        for i, (off, ln, _crc, label) in enumerate(d["entries"][: d["train"]]):
            cdir = os.path.join(a.out, classes[label])
            os.makedirs(cdir, exist_ok=True)
            f.seek(off)
            with open(os.path.join(cdir, f"{i:07d}.jpg"), "wb") as o:
                o.write(f.read(ln))
    print(f"extracted {d['train']} JPEG records to {a.out}")


def run_loader(name, dataset, workers, batches):
    import torch

    torch.set_num_threads(1)
    dl = torch.utils.data.DataLoader(
        dataset, batch_size=128, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=False
    )
    n, t = 0, None
    done = 0
    while done < batches + 1:
        for x, _y in dl:
            if t is None:
                t = time.perf_counter()  # the first batch is warm-up
            else:
                n += x.shape[0]
            done += 1
            if done >= batches + 1:
                break
    s = time.perf_counter() - t
    print(f"{name}, {workers} workers: {n} images in {s:.2f} s = {n / s:.0f} images/s")


def cmd_torchvision(a):
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose(
        [
            T.RandomCrop(227),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    run_loader("torchvision ImageFolder", ImageFolder(a.tree, transform=tf), a.workers, a.batches)


class Memmap:
    """Raw uint8 CHW records of a netc dataset, read through numpy.memmap."""

    def __init__(self, path):
        import numpy as np

        d = read_netc(path)
        if d["format"] != 0:
            sys.exit("memmap needs a raw dataset")
        s = d["size"]
        e = d["entries"]
        # Raw records of 3*s*s bytes (a multiple of 64 for s=256) lie back to back.
        assert all(e[i][0] == HEADER + i * 3 * s * s for i in range(d["train"])), "records not contiguous"
        self.path, self.n, self.s = path, d["train"], s
        self.labels = np.array([x[3] for x in e[: self.n]], dtype=np.int64)
        self.arr = None
        self.mean = np.array([123.7, 116.3, 103.5], dtype=np.float32).reshape(3, 1, 1)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import numpy as np
        import torch

        if self.arr is None:  # opened in each worker
            self.arr = np.memmap(self.path, dtype=np.uint8, mode="r", offset=HEADER, shape=(self.n, 3, self.s, self.s))
        oy, ox = np.random.randint(0, self.s - 227 + 1, size=2)
        x = self.arr[i, :, oy : oy + 227, ox : ox + 227]
        if np.random.rand() < 0.5:
            x = x[:, :, ::-1]
        x = (x.astype(np.float32) - self.mean) * (1 / 58.0)
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[i])


def cmd_memmap(a):
    run_loader("numpy memmap", Memmap(a.dataset), a.workers, a.batches)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("prepare")
    q.add_argument("src")
    q.add_argument("out")
    q.add_argument("--jobs", type=int, default=1)
    q = sub.add_parser("extract")
    q.add_argument("dataset")
    q.add_argument("out")
    for name in ("torchvision", "memmap"):
        q = sub.add_parser(name)
        q.add_argument("tree" if name == "torchvision" else "dataset")
        q.add_argument("--workers", type=int, default=1)
        q.add_argument("--batches", type=int, default=40)
    a = p.parse_args()
    {"prepare": cmd_prepare, "extract": cmd_extract, "torchvision": cmd_torchvision, "memmap": cmd_memmap}[a.cmd](a)


if __name__ == "__main__":
    main()
