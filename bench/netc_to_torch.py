"""A netc network and checkpoint as a PyTorch module.

    netc compile NET.net --emit ir > net.ir
    python bench/netc_to_torch.py net.ir CHECKPOINT.safetensors \
        [--inputs X.f32 --logits L.f32 [--tol 1e-4]]

`NetcModule(ir_text, tensors)` interprets netc's IR text form (one node per
line, `%5 = conv(%0, %4, %2) filters=16 size=5 stride=1 pad=2 : ... t0
"conv1/conv"`) as a torch.nn.Module, its parameters loaded from the
checkpoint under netc's names (`conv1/conv.weight@t0`, with `/`, `.` and
`@` spelt `__`, `_` and `___` in the module's own parameter names).
Layouts are netc's and PyTorch's alike: conv weights `[F, C/groups, kh,
kw]`, dense weights `[units, inputs]` applied as `x·Wᵀ + b` to the input
flattened in C, H, W order; every tower is run as its own layer and
`across` is the concatenation of the towers along channels.

It covers the forward ops of the IR before any pass: input, param, conv
(rectangular size/stride/pad, dilation, groups, no bias), dense, relu,
tanh, sigmoid, leaky_relu, maxpool (padded with −∞), avgpool (zero
padding counted in the divisor, PyTorch's `count_include_pad=True`),
global_avgpool, flatten, softmax (an output: computed, not the result),
sum (netc's `add` layer), concat, batchnorm, dropout, lrn and
softmax_xent (whose logits `forward` returns). A fused or backward op is
refused by name. `.eval()` (the default after loading, as in the CLI
below) normalises with the running statistics and keeps every unit;
`.train()` normalises with the batch's mean and biased variance and
updates the running statistics as netc does, `(1−momentum)·r +
momentum·batch` with the unbiased variance (PyTorch's
`F.batch_norm(training=True)` is exactly this), and applies inverted
dropout (kept units scaled by 1/(1−rate), as netc). Batchnorm's γ and β
(roles weight, bias) are parameters; its running mean and variance are
buffers (`module.running[key]`), never trained.

LRN: netc uses the paper's alpha as written over channels i ± ⌊n/2⌋;
torch.nn.functional.local_response_norm divides alpha by its size m and
sums over channels i − ⌊m/2⌋ ..= i + ⌊(m−1)/2⌋, so m = 2⌊n/2⌋ + 1 and
alpha·m give netc's LRN exactly (k is torch's `k`).

With --inputs/--logits (float32 files: prepared images, netc's logits for
them) it prints the worst relative error (per image, the largest absolute
difference over the classes divided by the largest magnitude of netc's
logits) and exits 1 above --tol. The checkpoint is read with the standard
library and numpy (safetensors is an 8-byte header length, a JSON header,
then the tensors' bytes).
"""

import argparse
import json
import re
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

LINE = re.compile(r'^%(\d+) = (\w+)(?:\(([^)]*)\))?(.*?) : (.*) (shared|t\d+) "([^"]+)"')
# `key=value`, a value being a call such as `normal(0, 0.01)` or one word.
ATTR = re.compile(r"(\w+)=(\w+\([^)]*\)|\S+)")


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {meta['dtype']}, not F32")
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"]).copy()
    return out


def torch_name(key):
    return key.replace("@", "___").replace("/", "__").replace(".", "_")


def hw(value):
    """An IR size/stride/pad: `3` (square) or `3x5` (height x width)."""
    parts = [int(v) for v in value.split("x")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


class NetcModule(torch.nn.Module):
    def __init__(self, ir_text, tensors):
        super().__init__()
        self.nodes = []
        # netc's key of every trained parameter, in IR order, and the
        # running statistics (buffers) by netc's key.
        self.param_keys = []
        self.running = {}
        for line in ir_text.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            idx, op, args, attrs, _, dev, name = m.groups()
            ins = [int(a.strip().lstrip("^%")) for a in args.split(",")] if args else []
            kv = dict(ATTR.findall(attrs))
            key = f"{name}@{dev}"
            self.nodes.append((int(idx), op, ins, kv, key))
            if op != "param":
                continue
            role = kv.get("role")
            if key not in tensors:
                raise ValueError(f"the checkpoint has no tensor `{key}` ({role})")
            value = torch.from_numpy(np.ascontiguousarray(tensors[key]))
            if role in ("weight", "bias"):
                self.register_parameter(torch_name(key), torch.nn.Parameter(value))
                self.param_keys.append(key)
            elif role in ("running_mean", "running_var"):
                self.register_buffer(torch_name(key), value)
                self.running[key] = torch_name(key)
            else:
                raise ValueError(f"{key}: parameter role `{role}` is not covered here")

    def param(self, key):
        """The trained parameter netc calls `key` (`conv1/conv.weight@t0`)."""
        return getattr(self, torch_name(key))

    def forward(self, x):
        v = {}
        logits = None
        for idx, op, ins, kv, key in self.nodes:
            a = [v.get(i) for i in ins]
            if op == "input":
                v[idx] = x if kv["kind"] == "tensor" else None
            elif op == "param":
                v[idx] = getattr(self, torch_name(key), None)
            elif op == "conv":
                bias = a[2] if len(a) > 2 else None
                v[idx] = F.conv2d(
                    a[0],
                    a[1],
                    bias,
                    stride=hw(kv["stride"]),
                    padding=hw(kv["pad"]),
                    dilation=int(kv.get("dilation", 1)),
                    groups=int(kv.get("groups", 1)),
                )
            elif op == "relu":
                v[idx] = F.relu(a[0])
            elif op == "tanh":
                v[idx] = torch.tanh(a[0])
            elif op == "sigmoid":
                v[idx] = torch.sigmoid(a[0])
            elif op == "leaky_relu":
                v[idx] = F.leaky_relu(a[0], float(kv["slope"]))
            elif op == "lrn":
                n = int(kv["size"])
                m = 2 * (n // 2) + 1
                v[idx] = F.local_response_norm(
                    a[0], m, alpha=float(kv["alpha"]) * m, beta=float(kv["beta"]), k=float(kv["k"])
                )
            elif op == "maxpool":
                v[idx] = F.max_pool2d(
                    a[0], int(kv["size"]), int(kv["stride"]), padding=int(kv.get("pad", 0))
                )
            elif op == "avgpool":
                v[idx] = F.avg_pool2d(
                    a[0],
                    int(kv["size"]),
                    int(kv["stride"]),
                    padding=int(kv.get("pad", 0)),
                    count_include_pad=True,
                )
            elif op == "global_avgpool":
                v[idx] = a[0].mean(dim=(2, 3))
            elif op == "flatten":
                v[idx] = torch.flatten(a[0], 1)
            elif op == "softmax":
                v[idx] = F.softmax(a[0], dim=1)
            elif op == "dense":
                bias = a[2] if len(a) > 2 else None
                v[idx] = F.linear(torch.flatten(a[0], 1), a[1], bias)
            elif op == "dropout":
                v[idx] = F.dropout(a[0], float(kv.get("rate", 0.5)), training=self.training)
            elif op == "concat":
                v[idx] = torch.cat(a, dim=1)
            elif op == "sum":
                out = a[0]
                for t in a[1:]:
                    out = out + t
                v[idx] = out
            elif op == "batchnorm":
                x_, gamma, beta, mean, var = a
                v[idx] = F.batch_norm(
                    x_,
                    mean,
                    var,
                    gamma,
                    beta,
                    training=self.training,
                    momentum=float(kv["momentum"]),
                    eps=float(kv["eps"]),
                )
            elif op == "softmax_xent":
                logits = a[0]
            else:
                raise ValueError(f"{key}: no PyTorch equivalent for `{op}` here")
        return logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ir")
    ap.add_argument("checkpoint")
    ap.add_argument("--inputs")
    ap.add_argument("--logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    with open(a.ir) as f:
        m = NetcModule(f.read(), read_safetensors(a.checkpoint)).eval()
    params = sum(p.numel() for p in m.parameters())
    print(f"module: {len(m.nodes)} nodes, {params} parameters")
    if not a.inputs:
        return 0
    want = np.fromfile(a.logits, dtype="<f4")
    first = next(n for n in m.nodes if n[1] == "input" and n[3]["kind"] == "tensor")
    dims = [int(d) for d in re.search(r"\[([\d,]+)\]", _type_of(a.ir, first[0])).group(1).split(",")]
    x = torch.from_numpy(np.fromfile(a.inputs, dtype="<f4").reshape([-1] + dims))
    with torch.no_grad():
        got = m(x).numpy().astype(np.float64)
    want = want.reshape(got.shape).astype(np.float64)
    rel = np.abs(got - want).max(axis=1) / np.maximum(np.abs(want).max(axis=1), 1e-30)
    worst = int(rel.argmax())
    print(f"images: {got.shape[0]}, classes: {got.shape[1]}")
    print(f"worst relative error {rel[worst]:.3e} (image {worst})")
    return 0 if rel[worst] <= a.tol else 1


def _type_of(ir_path, idx):
    with open(ir_path) as f:
        for line in f:
            if line.startswith(f"%{idx} = "):
                return line.split(" : ", 1)[1]
    raise ValueError(f"no node %{idx}")


if __name__ == "__main__":
    sys.exit(main())
