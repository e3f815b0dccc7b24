"""A netc network and checkpoint as a PyTorch module.

    netc compile NET.net --emit ir > net.ir
    python bench/netc_to_torch.py net.ir CHECKPOINT.safetensors \
        [--inputs X.f32 --logits L.f32 [--tol 1e-4]]

`NetcModule(ir_text, tensors)` interprets netc's IR text form (one node per
line, `%5 = conv(%0, %4, %2) filters=16 size=5 stride=1 pad=2 : ... t0
"conv1/conv"`) as a torch.nn.Module in evaluation mode, its parameters
loaded from the checkpoint under netc's names (`conv1/conv.weight@t0`,
with `/`, `.` and `@` spelt `__`, `_` and `___` in the module's own
parameter names). Layouts are netc's and PyTorch's alike: conv weights
`[F, C, K, K]`, dense weights `[units, inputs]` applied as `x·Wᵀ + b` to
the input flattened in C, H, W order; every tower is run as its own
layer and `across` is the concatenation of the towers along channels.

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


class NetcModule(torch.nn.Module):
    def __init__(self, ir_text, tensors):
        super().__init__()
        self.nodes = []
        for line in ir_text.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            idx, op, args, attrs, _, dev, name = m.groups()
            ins = [int(a.strip().lstrip("^%")) for a in args.split(",")] if args else []
            kv = dict(ATTR.findall(attrs))
            self.nodes.append((int(idx), op, ins, kv, f"{name}@{dev}"))
            if op == "param" and kv.get("role") in ("weight", "bias"):
                key = f"{name}@{dev}"
                self.register_parameter(
                    torch_name(key), torch.nn.Parameter(torch.from_numpy(tensors[key]))
                )

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
                s, p = int(kv["stride"]), int(kv["pad"])
                v[idx] = F.conv2d(a[0], a[1], a[2], stride=s, padding=p)
            elif op == "relu":
                v[idx] = F.relu(a[0])
            elif op == "lrn":
                n = int(kv["size"])
                m = 2 * (n // 2) + 1
                v[idx] = F.local_response_norm(
                    a[0], m, alpha=float(kv["alpha"]) * m, beta=float(kv["beta"]), k=float(kv["k"])
                )
            elif op == "maxpool":
                v[idx] = F.max_pool2d(a[0], int(kv["size"]), int(kv["stride"]))
            elif op == "dense":
                v[idx] = F.linear(torch.flatten(a[0], 1), a[1], a[2])
            elif op == "dropout":
                v[idx] = a[0]
            elif op == "concat":
                v[idx] = torch.cat(a, dim=1)
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
