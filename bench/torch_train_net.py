"""The PyTorch peer for the ACCURACY comparison of any Fashion-MNIST network
netc trains: it takes the network, its initial weights and its training
settings from netc itself, trains it in PyTorch as `netc train` does, and
prints the same per-epoch numbers, so that the two learning curves can be
laid side by side.

    python3 bench/torch_train_net.py networks/lenet5.net --threads 1
    python3 bench/torch_train_net.py networks/resnet-fmnist.net --epochs 1 --limit 10000
    python3 bench/torch_train_net.py NET.net --out torch.jsonl --seed 3
    python3 bench/torch_train_net.py NET.net --check-eval out/checkpoint.safetensors

What comes from netc (the `netc` binary, `--netc`, default
target/release/netc beside this folder):

* The network: `netc compile NET --emit ir`, interpreted by
  `NetcModule` of bench/netc_to_torch.py (its docstring lists the ops and
  their conventions: avgpool's padding counted in the divisor, maxpool's
  −∞ padding, LRN's alpha, batchnorm's statistics, inverted dropout).
* The initial weights, the very values: `netc train NET --stop-after 0`
  checkpoints before its first step, so the checkpoint holds the weights
  netc's `init` rules draw from the seed (and batchnorm's γ = 1, β = 0,
  running mean 0 and variance 1), the zero velocities, and the training
  set's per-pixel mean image netc subtracts (`preparation/mean_image`).
* The data settings, the batch size and the seed: that checkpoint's
  `preparation` (pad, crop, random_crop, mirror, mean, scale, test) and
  `progress` (batch_size, seed; `plateau_lr` is `sgd.lr`).
* The update of every parameter: the training step's `sgd_update` nodes
  (`netc compile NET --passes autodiff --emit ir`): momentum,
  weight_decay, nesterov, lr_mult and decay_mult, each parameter its own;
  the label smoothing of `softmax_xent_grad`. netc decays EVERY trained
  parameter by default: biases, and batchnorm's γ and β too; the running
  statistics are not parameters and are neither decayed nor trained.
* `epochs` and `schedule` are read from the file's `train` block (in
  `netc fmt --stdout` form; netc prints them nowhere else), with the
  README's defaults (epochs 90, plateau(0.1, 1, 3)); `--epochs` overrides.

What is matched with `netc train`:

* Data: IDX Fashion-MNIST from `--data`; every input value is
  `(pixel − mean_image) · scale` in FP32; training crops zero-padded by
  `pad` AFTER normalisation (padding is exactly 0), a crop of `crop` at
  offsets uniform in 0..=2·pad + size − crop, horizontal mirror with
  p = ½; `random_crop: false` takes the centre offset in training too
  (still mirrored if `mirror`), as netc does. Test: the crop at
  the centre offset (the unpadded image when crop = size), the whole
  test set after every epoch, in batches of `batch`, the last partial
  batch kept.
* Batches of `batch`, reshuffled every epoch, the last partial batch
  dropped; `--limit N` uses the first N training images.
* The update, the paper's rule as netc's kernel writes it, with
  ε = lr·lr_mult and λ = weight_decay·decay_mult:
  `v = m·v − λ·ε·w − ε·g; w = w + v`, or with nesterov
  `d = λ·ε·w + ε·g; v = m·v − d; w = w + m·v − d`; `g` the gradient of the
  batch-MEAN cross-entropy (label-smoothed if the file says so).
* Schedules: fixed; step(every, factor) by 0-based epoch; cosine(warmup,
  min_lr) set at every step from the step's index in the run; plateau
  (factor, patience, drops) on the test top-1 error after each epoch.
* Report: per epoch the rate of its last step, train loss and train top-1
  error (the training steps' own, in training mode), test loss, top-1 and
  top-5 error, training images/s; `--out` writes JSON lines with the keys
  of netc's metrics.jsonl (errors as fractions).
* Arithmetic: FP32, on the CPU (`--threads`, default 1).

What is NOT matched: the random streams after initialisation. The shuffle
order, crop offsets, mirrors and dropout masks come from PyTorch's
generator seeded with `--seed` (netc's counter-based generator is not
reproduced), so the two runs agree in distribution, not bit for bit;
compare across a few seeds, not single numbers. The summation orders of
the kernels differ as well. `test: ten_crop`, lighting (colour images)
and data other than IDX files are refused. With `--limit` netc's mean
image of the whole training set is still the one subtracted.

`--check-eval CKPT` instead checks the interpreter in evaluation mode:
it runs `netc eval NET --weights CKPT --predictions` and compares netc's
logits for every test image with NetcModule's from the same checkpoint
(worst relative error per image: the largest absolute difference over
the classes over the largest magnitude of netc's logits), exiting 1
above `--tol`.
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from netc_to_torch import ATTR, LINE, NetcModule, read_safetensors  # noqa: E402
from torch_train_fmnist import read_idx  # noqa: E402


def run_netc(netc, args):
    """`netc ARGS`' standard output; exits with its message on failure."""
    p = subprocess.run([netc, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"`netc {' '.join(args)}` failed:\n{p.stderr.strip()}")
    return p.stdout


def checkpoint_meta(path):
    """The `netc` metadata of a checkpoint (JSON)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["netc"])


def updates(step_ir):
    """Per parameter key, its sgd_update settings; and the label smoothing."""
    out, smoothing = {}, 0.0
    for line in step_ir.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        _, op, _, attrs, _, dev, name = m.groups()
        kv = dict(ATTR.findall(attrs))
        if op == "sgd_update":
            if not name.endswith(".update"):
                raise ValueError(f"sgd_update `{name}`: not named PARAM.update")
            out[f"{name[: -len('.update')]}@{dev}"] = {
                "momentum": float(kv["momentum"]),
                "weight_decay": float(kv["weight_decay"]),
                "nesterov": kv.get("nesterov") == "true",
                "lr_mult": float(kv.get("lr_mult", 1)),
                "decay_mult": float(kv.get("decay_mult", 1)),
            }
        elif op == "softmax_xent_grad":
            smoothing = float(kv.get("smoothing", 0))
    return out, smoothing


def train_block(text):
    """`epochs` and `schedule` of a .net file's canonical text.

    Returns (epochs, (kind, {argument: value})) with the README's defaults;
    a `let` constant naming a number is resolved.
    """
    text = re.sub(r"//[^\n]*", "", text)
    consts = dict(re.findall(r"\blet\s+(\w+)\s*=\s*([-+0-9.eE]+)\s*(?:\n|$)", text))
    m = re.search(r"\btrain\s*\{", text)
    body = ""
    if m:  # the block up to its matching brace
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[m.end() : i - 1]
    # Only the block's top level: nested blocks (sgd, init, data) blanked out.
    top, depth = [], 0
    for ch in body:
        depth += ch == "{"
        top.append(ch if depth == 0 else " ")
        depth -= ch == "}"
    top = "".join(top)

    def number(v):
        v = v.strip()
        return float(consts.get(v, v))

    e = re.search(r"\bepochs\s*:\s*([\w.+-]+)", top)
    epochs = int(number(e.group(1))) if e else 90
    s = re.search(r"\bschedule\s*:\s*(\w+)\s*(?:\(([^)]*)\))?", top)
    kind, raw = (s.group(1), s.group(2) or "") if s else ("plateau", "")
    names = {
        "fixed": [],
        "step": ["every", "factor"],
        "plateau": ["factor", "patience", "drops"],
        "cosine": ["warmup", "min_lr"],
    }
    defaults = {
        "fixed": {},
        "step": {"every": 30, "factor": 0.1},
        "plateau": {"factor": 0.1, "patience": 1, "drops": 3},
        "cosine": {"warmup": 0.0, "min_lr": 0.0},
    }
    if kind not in names:
        sys.exit(f"schedule `{kind}` is not covered here")
    args = dict(defaults[kind])
    for pos, arg in enumerate(a for a in raw.split(",") if a.strip()):
        if ":" in arg:
            k, val = arg.split(":", 1)
            args[k.strip()] = number(val)
        else:
            args[names[kind][pos]] = number(arg)
    return epochs, (kind, args)


class Schedule:
    """netc's learning rate by epoch and step (src/train/run.rs)."""

    def __init__(self, kind, args, lr, epochs, steps_per_epoch):
        self.kind, self.args, self.base = kind, args, lr
        self.epochs, self.per = epochs, max(steps_per_epoch, 1)
        self.plateau_lr, self.best, self.since, self.drops = lr, math.inf, 0, 0

    def lr(self, epoch, step):
        a = self.args
        if self.kind == "fixed":
            return self.base
        if self.kind == "step":
            return self.base * a["factor"] ** (epoch // max(int(a["every"]), 1))
        if self.kind == "plateau":
            return self.plateau_lr
        s = epoch * self.per + step
        total = self.epochs * self.per
        w = min(round(a["warmup"] * self.per), total)
        if s < w:
            return self.base * s / w
        progress = (s - w) / (total - w) if total > w else 1.0
        return a["min_lr"] + (self.base - a["min_lr"]) * 0.5 * (1 + math.cos(math.pi * progress))

    def observe(self, error):
        """The plateau rule after an epoch's test top-1 error."""
        if self.kind != "plateau":
            return
        if error < self.best:
            self.best, self.since = error, 0
        else:
            self.since += 1
            if self.since > self.args["patience"] and self.drops < self.args["drops"]:
                self.plateau_lr *= self.args["factor"]
                self.drops += 1
                self.since = 0


class Data:
    """Fashion-MNIST normalised as netc does, with netc's crops."""

    def __init__(self, data_dir, prep, mean_image, limit):
        if prep.get("source") != "idx":
            sys.exit(f"data source `{prep.get('source')}`: only IDX files are covered here")
        if prep.get("test") != "center":
            sys.exit(f"`test: {prep.get('test')}` is not covered here (centre crops only)")
        if prep.get("lighting", 0) and prep.get("channels") == 3:
            sys.exit("PCA lighting is not covered here")
        p = lambda name: os.path.join(data_dir, name)
        xtr = read_idx(p("train-images-idx3-ubyte.gz"))
        ytr = read_idx(p("train-labels-idx1-ubyte.gz")).long()
        self.xte = read_idx(p("t10k-images-idx3-ubyte.gz"))
        self.yte = read_idx(p("t10k-labels-idx1-ubyte.gz")).long()
        if limit is not None:
            xtr, ytr = xtr[:limit], ytr[:limit]
        self.ytr = ytr
        scale = torch.tensor(prep["scale"] if prep.get("scale") else 1.0, dtype=torch.float32)
        mean = torch.from_numpy(mean_image).float() if prep.get("mean") else 0.0
        norm = lambda x: (x.unsqueeze(1).float() - mean) * scale
        self.train_n = norm(xtr)  # [N, 1, H, W]
        self.test_n = norm(self.xte)
        h = self.train_n.shape[-1]
        self.pad, self.crop = int(prep.get("pad") or 0), int(prep.get("crop") or h)
        self.augments = bool(prep.get("random_crop") or prep.get("mirror"))
        self.random_crop = bool(prep.get("random_crop"))
        self.mirror = bool(prep.get("mirror"))
        self.span = h + 2 * self.pad - self.crop  # offsets 0..=span
        self.centre = self.span // 2
        self.test_x = self.cut(self.test_n, self.centre, self.centre, None)

    def cut(self, x, oy, ox, flip):
        """Crops of the zero-padded x at offsets (oy, ox): numbers or [B]."""
        b, c = x.shape[0], self.crop
        padded = F.pad(x, (self.pad,) * 4) if self.pad else x
        if isinstance(oy, int) and flip is None:
            return padded[:, :, oy : oy + c, ox : ox + c].contiguous()
        ar = torch.arange(c)
        rows = oy[:, None] + ar
        cols = ox[:, None] + torch.where(flip[:, None], c - 1 - ar, ar)
        bi = torch.arange(b)[:, None, None, None]
        ch = torch.arange(x.shape[1])[None, :, None, None]
        return padded[bi, ch, rows[:, None, :, None], cols[:, None, None, :]]

    def train_batch(self, idx, gen):
        x = self.train_n[idx]
        if not self.augments:
            return self.cut(x, self.centre, self.centre, None), self.ytr[idx]
        b = len(idx)
        oy = torch.randint(0, self.span + 1, (b,), generator=gen)
        ox = torch.randint(0, self.span + 1, (b,), generator=gen)
        flip = torch.rand(b, generator=gen) < 0.5
        if not self.random_crop:
            oy = torch.full_like(oy, self.centre)
            ox = torch.full_like(ox, self.centre)
        if not self.mirror:
            flip = torch.zeros_like(flip)
        return self.cut(x, oy, ox, flip), self.ytr[idx]


def rust_e(v):
    """`v` as netc prints it (Rust's `{:.2e}`): `5.00e-2`, not `5.00e-02`."""
    mant, exp = f"{v:.2e}".split("e")
    return f"{mant}e{int(exp)}"


def sgd_step(net, velocities, settings, lr):
    """netc's sgd_update for every parameter (see the module docstring)."""
    with torch.no_grad():
        for key in net.param_keys:
            w, v, s = net.param(key), velocities[key], settings[key]
            eps = lr * s["lr_mult"]
            lam = s["weight_decay"] * s["decay_mult"]
            g = w.grad if w.grad is not None else torch.zeros_like(w)
            if s["nesterov"]:
                d = w * (lam * eps) + g * eps
                v.mul_(s["momentum"]).sub_(d)
                w.add_(v * s["momentum"] - d)
            else:
                v.mul_(s["momentum"]).add_(w, alpha=-lam * eps).add_(g, alpha=-eps)
                w.add_(v)
            w.grad = None


def evaluate(net, data, batch):
    """Test loss (mean), top-1 and top-5 error (fractions), centre crops."""
    net.eval()
    loss, top1, top5 = 0.0, 0, 0
    x, y = data.test_x, data.yte
    k = None
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = net(x[i : i + batch])
            t = y[i : i + batch]
            k = min(5, logits.shape[1])
            loss += F.cross_entropy(logits, t, reduction="sum").double().item()
            best = logits.topk(k, dim=1).indices
            top1 += (best[:, 0] == t).sum().item()
            top5 += (best == t[:, None]).any(dim=1).sum().item()
    n = len(x)
    return loss / n, 1.0 - top1 / n, 1.0 - top5 / n


def initial(netc, net_path, data_dir, extra):
    """netc's checkpoint before its first step: (metadata, tensors)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["train", net_path, "--data", data_dir, "--stop-after", "0", "--out", tmp, *extra]
        run_netc(netc, cmd)
        ckpt = os.path.join(tmp, "checkpoint.safetensors")
        if not os.path.exists(ckpt):
            sys.exit(f"`netc {' '.join(cmd)}` wrote no checkpoint")
        return checkpoint_meta(ckpt), read_safetensors(ckpt)


def write_idx(path, array):
    """A gzip'd unsigned-byte IDX file (the MNIST format) of `array`."""
    import gzip

    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + a.tobytes())


def check_steps(args, netc, k):
    """K whole-set steps in netc and here from the same weights, compared.

    The network's `train.data` is replaced by its `mean` and `scale` alone
    (no crop, pad or mirror: the centre, so no random choice), the data by
    the first `batch` training images, and the batch is the training set,
    so that netc's shuffle cannot matter (the batch's mean loss and its
    batchnorm statistics do not depend on the order). After K epochs of
    one step each, every tensor of netc's checkpoint (weights, velocities,
    running statistics) is compared with ours: the RMS difference over the
    tensor's RMS (or 1e-3 if smaller), exit 1 above --tol. Networks with
    dropout are refused (their masks are random). With ReLU, a unit whose
    input lies within rounding of 0 may pass its gradient in one and not
    in the other (the summation orders differ), so ReLU networks agree to
    about 1e-3 in the layers below such a unit, smooth ones to 1e-5.
    """
    text = run_netc(netc, ["fmt", "--stdout", args.net])
    ir = run_netc(netc, ["compile", args.net, "--emit", "ir"])
    if re.search(r"= dropout\(", ir):
        sys.exit("--check-steps: the network has dropout, whose masks are random")
    keep = []
    block = re.search(r"(\n\s*data\s*\{)([^}]*)(\})", text)
    if block:
        keep = [ln for ln in block.group(2).splitlines()
                if re.match(r"\s*(mean|scale)\s*:", ln)]
        text = text[: block.start()] + "\n  data {\n" + "\n".join(keep) + "\n  }" + \
            text[block.end():]
    with tempfile.TemporaryDirectory() as tmp:
        net_path = os.path.join(tmp, "net.net")
        with open(net_path, "w") as f:
            f.write(text)
        probe, _ = initial(netc, net_path, args.data, [])
        batch = args.limit or int(probe["progress"]["batch_size"])
        src = lambda name: read_idx(os.path.join(args.data, name)).numpy()
        sub = os.path.join(tmp, "data")
        os.makedirs(sub)
        for name, n in [("train-images-idx3-ubyte.gz", batch), ("train-labels-idx1-ubyte.gz", batch),
                        ("t10k-images-idx3-ubyte.gz", 500), ("t10k-labels-idx1-ubyte.gz", 500)]:
            write_idx(os.path.join(sub, name), src(name)[:n])
        b = ["--batch", str(batch)]
        meta, tensors = initial(netc, net_path, sub, b)
        out = os.path.join(tmp, "run")
        run_netc(netc, ["train", net_path, "--data", sub, "--epochs", str(k), "--out", out, *b])
        want = read_safetensors(os.path.join(out, "checkpoint.safetensors"))
        step_ir = run_netc(netc, ["compile", net_path, "--passes", "autodiff", "--emit", "ir"])
        _, (kind, sargs) = train_block(text)
        data = Data(sub, meta["preparation"], tensors["preparation/mean_image"], None)
    settings, smoothing = updates(step_ir)
    net = NetcModule(ir, tensors).train()
    vel = {key: torch.from_numpy(tensors[velocity_key(key)].copy()) for key in net.param_keys}
    sched = Schedule(kind, sargs, float(meta["progress"]["plateau_lr"]), k, 1)
    x, y = data.train_batch(torch.arange(batch), None)
    for epoch in range(k):
        loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
        loss.backward()
        sgd_step(net, vel, settings, sched.lr(epoch, 0))
    got = {}
    for key in net.param_keys:
        got[key] = net.param(key).detach().numpy()
        got[velocity_key(key)] = vel[key].numpy()
    for key, buf in net.running.items():
        got[key] = getattr(net, buf).numpy()
    worst, worst_key = 0.0, None
    for key, g in sorted(got.items()):
        w = want[key].astype(np.float64)
        d = np.abs(g.astype(np.float64) - w)
        # Relative to the tensor's largest magnitude, or to 1e-3 below it: a
        # tensor 0 in exact arithmetic (the stem's running mean, here, when
        # the batch is the set whose mean image is subtracted) is rounding.
        d = np.sqrt((d * d).mean()) / max(np.sqrt((w * w).mean()), 1e-3)
        if args.verbose:
            print(f"  {key}: {d:.3e}")
        if d > worst:
            worst, worst_key = d, key
    print(f"{args.net}: {k} steps of the whole batch of {batch} images in netc and here; "
          f"{len(got)} tensors, worst relative RMS difference {worst:.3e} ({worst_key})")
    return 0 if worst <= args.tol else 1


def velocity_key(key):
    """`conv1/conv.weight@t0` -> `conv1/conv.weight.velocity@t0`."""
    at = key.rindex("@")
    return f"{key[:at]}.velocity{key[at:]}"


def check_eval(args, netc, ir, ckpt_path):
    """Compares netc's test-set logits from ckpt_path with NetcModule's."""
    meta = checkpoint_meta(ckpt_path)
    tensors = read_safetensors(ckpt_path)
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "pred.npy")
        run_netc(netc, ["eval", args.net, "--weights", ckpt_path, "--data", args.data,
                        "--predictions", npy])
        pred = np.load(npy)
    data = Data(args.data, meta["preparation"], tensors["preparation/mean_image"], 0)
    net = NetcModule(ir, tensors).eval()
    with torch.no_grad():
        got = torch.cat([net(data.test_x[i : i + 500]) for i in range(0, len(data.test_x), 500)])
    got = got.numpy().astype(np.float64)
    want = pred["logits"].astype(np.float64)
    order = pred["index"].astype(np.int64)
    got = got[order]
    rel = np.abs(got - want).max(axis=1) / np.maximum(np.abs(want).max(axis=1), 1e-30)
    worst = int(rel.argmax())
    agree = (got.argmax(axis=1) == pred["predicted"]).mean()
    print(f"{args.net}: {len(want)} test images, worst relative logit error {rel[worst]:.3e} "
          f"(image {order[worst]}), mean {rel.mean():.3e}; predictions agree on "
          f"{100 * agree:.2f}%")
    return 0 if rel[worst] <= args.tol else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("net", help="the .net file")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="directory of the four Fashion-MNIST IDX .gz files")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--seed", type=int, default=None,
                    help="override train.seed (netc's initial weights and PyTorch's streams)")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N training images (quick checks)")
    ap.add_argument("--out", default=None, help="write per-epoch JSON lines here")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch")
    ap.add_argument("--netc", default=os.path.join(HERE, "..", "target", "release", "netc"),
                    help="the netc binary")
    ap.add_argument("--check-eval", metavar="CKPT", default=None,
                    help="instead of training: compare netc's test logits from CKPT with ours")
    ap.add_argument("--check-steps", metavar="K", type=int, default=None,
                    help="instead of training: K whole-batch steps here and in netc, compared "
                         "(batch: --limit, default train.batch)")
    ap.add_argument("-v", "--verbose", action="store_true", help="--check-steps: every tensor")
    ap.add_argument("--tol", type=float, default=1e-4, help="for --check-eval, --check-steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    netc = args.netc
    if not os.path.exists(netc):
        sys.exit(f"{netc}: no netc binary (cargo build --release, or --netc PATH)")

    if args.check_steps:
        return check_steps(args, netc, args.check_steps)
    ir = run_netc(netc, ["compile", args.net, "--emit", "ir"])
    if args.check_eval:
        return check_eval(args, netc, ir, args.check_eval)
    step_ir = run_netc(netc, ["compile", args.net, "--passes", "autodiff", "--emit", "ir"])
    settings, smoothing = updates(step_ir)
    file_epochs, (kind, sched_args) = train_block(run_netc(netc, ["fmt", "--stdout", args.net]))
    epochs = args.epochs if args.epochs is not None else file_epochs

    extra = ["--seed", str(args.seed)] if args.seed is not None else []
    meta, tensors = initial(netc, args.net, args.data, extra)
    prog, prep = meta["progress"], meta["preparation"]
    batch, seed, lr0 = int(prog["batch_size"]), int(prog["seed"]), float(prog["plateau_lr"])

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = Data(args.data, prep, tensors["preparation/mean_image"], args.limit)
    net = NetcModule(ir, tensors).train()
    missing = [k for k in net.param_keys if k not in settings]
    if missing:
        sys.exit(f"no sgd_update in the training step for {missing}")
    velocities = {k: torch.from_numpy(tensors[velocity_key(k)].copy()) for k in net.param_keys}

    n = len(data.train_n)
    steps = n // batch  # the last partial batch is dropped
    if steps == 0:
        sys.exit(f"{n} training images: fewer than one batch of {batch}")
    sched = Schedule(kind, sched_args, lr0, epochs, steps)
    params = sum(p.numel() for p in net.parameters())
    decayed = sum(1 for s in settings.values() if s["weight_decay"] * s["decay_mult"] > 0)
    print(f"torch {torch.__version__} on cpu ({torch.get_num_threads()} threads): {meta['network']}, "
          f"{params} parameters ({decayed}/{len(settings)} tensors decayed), netc's initial "
          f"weights (seed {seed}); {n} training, {len(data.yte)} test images, batch {batch}, "
          f"{epochs} epochs, lr {lr0} schedule {kind}{sched_args or ''}", flush=True)

    out = open(args.out, "w") if args.out else None
    top1 = 1.0
    total_steps = 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, right = 0.0, 0
        t0 = time.perf_counter()
        lr = lr0
        for s in range(steps):
            lr = sched.lr(epoch, s)
            x, y = data.train_batch(perm[s * batch : (s + 1) * batch], gen)
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)  # batch mean
            loss.backward()
            sgd_step(net, velocities, settings, lr)
            with torch.no_grad():
                plain = F.cross_entropy(logits, y) if smoothing else loss
                loss_sum += plain.item() * batch
                right += (logits.argmax(dim=1) == y).sum().item()
            total_steps += 1
        secs = time.perf_counter() - t0
        seen = steps * batch
        train_loss = loss_sum / seen
        if not math.isfinite(train_loss):
            sys.exit(f"epoch {epoch + 1}: the training loss is not finite")
        test_loss, top1, top5 = evaluate(net, data, batch)
        sched.observe(top1)
        rate = seen / max(secs, 1e-9)
        train_top1 = 1.0 - right / seen
        print(f"epoch {epoch + 1:>3}  lr {rust_e(lr)}  train loss {train_loss:.4f}  train top-1 error "
              f"{100 * train_top1:.2f}%  test loss {test_loss:.4f}  top-1 error {100 * top1:.2f}%  "
              f"top-5 error {100 * top5:.2f}%  {rate:.0f} img/s", flush=True)
        if out:
            out.write(json.dumps({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                                  "test_loss": test_loss, "top1_error": top1,
                                  "top5_error": top5, "images_per_s": rate,
                                  "train_top1_error": train_top1, "steps": total_steps}) + "\n")
            out.flush()
    if out:
        out.close()
    print(f"final top-1 accuracy: {100 * (1 - top1):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
