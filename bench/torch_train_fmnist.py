"""The PyTorch peer for the ACCURACY comparison of networks/alexnet-fmnist.net:
trains the same network on Fashion-MNIST with the same recipe as `netc train`
and prints the same per-epoch numbers, so the two learning curves can be laid
side by side.

    python3 bench/torch_train_fmnist.py                       # full data, 12 epochs
    python3 bench/torch_train_fmnist.py --data data/fmnist-small --epochs 3
    python3 bench/torch_train_fmnist.py --epochs 1 --limit 4000   # quick check
    python3 bench/torch_train_fmnist.py --out torch-fmnist.jsonl

What is matched with netc (networks/alexnet-fmnist.net and its `train` block):

* Network: `Towers(1, 32, 5, 1, 2, 64, 3, 96, 96, 64, 256, 512, 10)` from
  bench/torch_peer.py, the network the throughput comparison also uses: two
  towers, cross-tower concatenations at conv3 and fc6/fc7/fc8, ReLU,
  tower-local LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) (the paper's
  alpha 1e-4: PyTorch divides alpha by the size), max pool 3/2, inverted
  dropout 0.5 on fc6/fc7 (netc's dropout also scales kept units by 1/(1-p)).
* Data: the per-pixel mean image of the training set (0..255 units) is
  subtracted, then the values are multiplied by `scale` = 1/255. Training
  crops: zero padding of 2 on every side *after* normalisation (the padded
  pixels are exactly 0 in the network input), a random 28x28 crop (offsets
  uniform in 0..4 inclusive on each axis), horizontal mirror with p = 0.5.
  Test: the centre crop, i.e. the unpadded image.
* Init: weights He normal, N(0, 2/fan_in) with fan_in the product of all
  weight dimensions but the first (conv: C*K*K, dense: inputs); biases 0.
* Optimiser: the paper's rule written out by hand (torch.optim.SGD folds the
  learning rate in differently, which matters when the rate changes):
  `v = momentum*v - weight_decay*lr*w - lr*grad; w = w + v` on every
  parameter (biases included, as in netc), momentum 0.9, weight decay 5e-4,
  `grad` the gradient of the batch-MEAN cross-entropy.
* Schedule: step(every 5, factor 0.1), lr = 0.01 * 0.1**(epoch // 5) for the
  0-based epoch.
* Batches: 128, reshuffled every epoch, the last partial training batch
  dropped; the test set is evaluated whole after every epoch.
* Report: train loss (mean over the epoch's training images, measured in
  training mode, i.e. with dropout and augmentation), test loss, top-1 and
  top-5 error on the test set, training images/s (training steps only, the
  evaluation excluded). Epochs are numbered from 1 as netc prints them, and
  `--out` writes JSON lines with netc's metrics.jsonl keys (errors as
  fractions, not percents).
* Arithmetic: full FP32 on both CPU and GPU (TF32 switched off).

What is NOT matched: the random streams. Initial weights, the shuffle order,
the crop offsets and mirrors, and the dropout masks come from PyTorch's
generators seeded with `--seed`, not from netc's counter-based generator, so
the two runs agree in distribution, not bit for bit; compare curves across
a few seeds, not single numbers. The summation order of the kernels differs
as well, which alone makes float results differ in the last bits.
"""
import argparse
import gzip
import json
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import Towers  # noqa: E402  (the same class the throughput peer times)

# The train block of networks/alexnet-fmnist.net.
BATCH = 128
LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 0.0005
STEP_EVERY = 5
STEP_FACTOR = 0.1
PAD = 2
CROP = 28
SCALE = 0.00392156862745098  # 1/255


def read_idx(path):
    """Reads a gzip'd IDX file (the MNIST format) into a uint8 tensor.

    Header: two zero bytes, the element type (0x08 = unsigned byte), the
    number of dimensions, then each dimension as a big-endian u32.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim :]
    count = 1
    for d in dims:
        count *= d
    if len(body) != count:
        raise ValueError(f"{path}: {len(body)} bytes of data for dimensions {dims}")
    # torch.frombuffer instead of numpy keeps NumPy out of the dependencies.
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load(data_dir, limit):
    """Training and test images as [N, 1, 28, 28] uint8, labels as int64."""
    p = lambda name: os.path.join(data_dir, name)
    xtr = read_idx(p("train-images-idx3-ubyte.gz"))
    ytr = read_idx(p("train-labels-idx1-ubyte.gz")).long()
    xte = read_idx(p("t10k-images-idx3-ubyte.gz"))
    yte = read_idx(p("t10k-labels-idx1-ubyte.gz")).long()
    if limit is not None:
        xtr, ytr = xtr[:limit], ytr[:limit]
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"{data_dir}: images and labels differ in count")
    return xtr.unsqueeze(1), ytr, xte.unsqueeze(1), yte


def normalise(x, mean):
    """netc's `mean: true, scale: 1/255`: (pixel - mean image) * scale, FP32."""
    return (x.float() - mean) * SCALE


def augment(x):
    """netc's training crops, batched on x's device.

    x: normalised [B, 1, 28, 28]. Zero-pads by PAD (the padding is 0 in the
    normalised input, i.e. "the mean"), takes a CROP x CROP window at offsets
    uniform in 0..2*PAD inclusive, and mirrors it horizontally with p = 0.5.
    """
    b, dev = x.shape[0], x.device
    padded = F.pad(x, (PAD, PAD, PAD, PAD))  # [B, 1, 32, 32]
    span = x.shape[-1] + 2 * PAD - CROP + 1  # number of possible offsets: 5
    oy = torch.randint(0, span, (b,), device=dev)
    ox = torch.randint(0, span, (b,), device=dev)
    flip = torch.rand(b, device=dev) < 0.5
    ar = torch.arange(CROP, device=dev)
    rows = oy[:, None] + ar  # [B, CROP]
    # A mirrored crop reads its columns right to left.
    cols = ox[:, None] + torch.where(flip[:, None], CROP - 1 - ar, ar)  # [B, CROP]
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded[bi, 0, rows[:, :, None], cols[:, None, :]]  # [B, CROP, CROP]
    return out.unsqueeze(1)


def he_init(net):
    """Weights N(0, 2/fan_in), fan_in = prod(weight.shape[1:]); biases 0."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel()
                p.normal_(0.0, (2.0 / fan_in) ** 0.5)


def sgd_step(params, velocities, lr):
    """The paper's update, as netc's kernel: v = m*v - wd*lr*w - lr*g; w += v."""
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(MOMENTUM).add_(p, alpha=-WEIGHT_DECAY * lr).add_(p.grad, alpha=-lr)
            p.add_(v)
            p.grad = None


def evaluate(net, x, y, mean, batch):
    """Test-set loss (mean), top-1 and top-5 error (fractions), centre crops."""
    net.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    top1 = torch.zeros((), dtype=torch.int64, device=x.device)
    top5 = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.no_grad():
        for i in range(0, len(x), batch):  # the last partial batch is kept
            logits = net(normalise(x[i : i + batch], mean))
            t = y[i : i + batch]
            loss += F.cross_entropy(logits, t, reduction="sum").double()
            best = logits.topk(5, dim=1).indices
            top1 += (best[:, 0] == t).sum()
            top5 += (best == t[:, None]).any(dim=1).sum()
    n = len(x)
    return loss.item() / n, 1.0 - top1.item() / n, 1.0 - top5.item() / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="directory of the four Fashion-MNIST IDX .gz files")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N training images (quick checks)")
    ap.add_argument("--out", default=None, help="write per-epoch JSON lines here")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for PyTorch (default: PyTorch's choice)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    try:  # NumPy is not used, but seed it if present in case anything draws from it
        import numpy as np

        np.random.seed(args.seed)
    except ImportError:
        pass
    if args.threads:
        torch.set_num_threads(args.threads)

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    # Full FP32 everywhere, as netc; cuDNN may pick its fastest FP32 algorithms.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if cuda:
        torch.backends.cudnn.benchmark = True

    xtr, ytr, xte, yte = load(args.data, args.limit)
    if len(xtr) < BATCH:
        sys.exit(f"{len(xtr)} training images: fewer than one batch of {BATCH}")
    # The per-pixel mean image of the (possibly limited) training set, 0..255 units.
    mean = xtr.double().mean(dim=0).float()
    xtr, ytr, xte, yte, mean = (t.to(dev) for t in (xtr, ytr, xte, yte, mean))
    # The training set normalised once; augmentation then only pads and crops.
    xtr_n = normalise(xtr, mean)
    name = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__} on {name}: {len(xtr)} training, {len(xte)} test images, "
          f"{args.epochs} epochs, seed {args.seed}", flush=True)

    net = Towers(1, 32, 5, 1, 2, 64, 3, 96, 96, 64, 256, 512, 10).to(dev)
    he_init(net)
    params = list(net.parameters())
    velocities = [torch.zeros_like(p) for p in params]

    out = open(args.out, "w") if args.out else None
    steps = len(xtr) // BATCH  # the last partial batch is dropped
    top1 = 1.0
    for epoch in range(args.epochs):
        lr = LR * STEP_FACTOR ** (epoch // STEP_EVERY)
        net.train()
        perm = torch.randperm(len(xtr), device=dev)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm[s * BATCH : (s + 1) * BATCH]
            loss = F.cross_entropy(net(augment(xtr_n[idx])), ytr[idx])  # batch mean
            loss.backward()
            sgd_step(params, velocities, lr)
            loss_sum += loss.detach().double() * BATCH  # summed on device: no sync per step
        if cuda:
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        seen = steps * BATCH
        train_loss = loss_sum.item() / seen
        if train_loss != train_loss:  # NaN
            sys.exit(f"epoch {epoch + 1}: the training loss is not finite")
        test_loss, top1, top5 = evaluate(net, xte, yte, mean, BATCH)
        rate = seen / max(secs, 1e-9)
        print(f"epoch {epoch + 1} lr {lr:.2e} train_loss {train_loss:.4f} test_loss {test_loss:.4f} "
              f"top1_error {100 * top1:.2f}% top5_error {100 * top5:.2f}% images/s {rate:.0f}",
              flush=True)
        if out:
            out.write(json.dumps({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                                  "test_loss": test_loss, "top1_error": top1,
                                  "top5_error": top5, "images_per_s": rate}) + "\n")
            out.flush()
    if out:
        out.close()
    print(f"final top-1 accuracy: {100 * (1 - top1):.2f}%")


if __name__ == "__main__":
    main()
