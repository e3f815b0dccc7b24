"""netc's training step against PyTorch on the CPU: every network, both peers.

    python3 bench/peers.py                      # every networks/*.net, 5 rounds
    python3 bench/peers.py --pairs 7 --out /tmp/peers.md
    python3 bench/peers.py --quick              # smoke test: 2 rounds of 2 steps
    python3 bench/peers.py networks/lenet5.net networks/resnet-fmnist.net

For each network, in rounds: `netc bench NET --batch B --steps S`, then the
PyTorch eager peer, then the `torch.compile` peer, the three one after the
other (never at the same time) on the same cores, `--pairs` rounds (default
5). Each figure is the images/s of S whole training steps (forward, the
loss, backward, the SGD update with momentum and weight decay) on synthetic
data after warm-up steps; the table gives the median images/s of each side
and the median of the per-round ratios (a ratio is taken within one round,
so that the machine's drift between rounds cancels), with their range.

The PyTorch models are built from the .net files: `netc compile NET --emit
ir` interpreted by `NetcModule` (bench/netc_to_torch.py: towers as
separate layers, `across` as concatenation, conv with groups, rectangular
and biasless forms, batchnorm, residual `add`, LRN in netc's convention,
dropout, the pooling variants), with random weights of the IR's shapes
(N(0, 2/fan_in) for weights, the IR's constant inits such as batchnorm's
γ = 1 and β = 0 otherwise). The optimiser is `torch.optim.SGD` with the
momentum, weight decay and per-parameter multipliers of netc's own
training step (`netc compile NET --passes autodiff --emit ir`, the
`sgd_update` nodes: caffenet's biases get lr 2 and decay 0), the loss
`F.cross_entropy` with the step's label smoothing. Batch: the file's
`train.batch`, except the 227² networks (alexnet, caffenet) at 32, as
their earlier measurements were; `--batch` overrides.

Threads: netc's CPU executor runs on rayon's global pool, which has one
thread per core unless RAYON_NUM_THREADS says otherwise; both are given
`--threads` (default 2): RAYON_NUM_THREADS for netc, torch.set_num_threads
and OMP_NUM_THREADS (which the code torch.compile generates uses) for
PyTorch.

OpenMP's waiting: the PyTorch peers run with OMP_WAIT_POLICY=PASSIVE
unless `--omp-wait-policy` says otherwise. With OpenMP's default (threads
spin at each barrier), a PyTorch process on cores that other processes
also use loses whole time slices at every parallel region: LeNet-5's eager
step ran at 364 images/s with the default and 3,175 with PASSIVE, minutes
apart, at a load average of 7 on the 2 cores. netc's rayon threads sleep
when idle, so PASSIVE is the like-for-like setting, and the faster one for
PyTorch wherever the machine is shared.

Each PyTorch peer is one long-lived process per network (started before
the network's first round; `torch.compile`'s compilation and the warm-up
happen then, outside every timing) that times S steps each time it is
asked; netc is a new process each round (its compile and two warm-up
steps are outside its timing too). `torch.compile` compiles the model
(forward and backward, default mode, the Inductor backend generating C++)
and the optimizer's step; where it fails or takes longer than
`--compile-timeout`, the table says so with the reason.

S (the timed steps) is chosen per network so that one side's timing takes
about `--seconds` (default 3) at the eager peer's warm-up speed, at least
2; `--steps` fixes it. The full default run over the 8 networks took 22
minutes (1,343 s) on the 2-core development machine shared with other
builds, about 8 of them torch.compile compiling (9 to 99 s a network,
less when Inductor's on-disk cache already holds the kernels); `--quick
networks/lenet5.net` took 20 to 45 s with that cache warm, 3 minutes cold.
"""

import argparse
import glob
import json
import math
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIG = {"alexnet": 32, "caffenet": 32}  # 227² networks: batch 32


# ---------------------------------------------------------------- the peer --

def build(netc, net_path):
    """(module, optimizer, input shape, classes, label smoothing) of NET."""
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    from netc_to_torch import LINE, ATTR, NetcModule
    from torch_train_net import updates

    def run(args):
        p = subprocess.run([netc, *args], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"netc {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    ir = run(["compile", net_path, "--emit", "ir"])
    step_ir = run(["compile", net_path, "--passes", "autodiff", "--emit", "ir"])
    settings, smoothing = updates(step_ir)
    rng = np.random.default_rng(0)
    tensors, shape, classes = {}, None, None
    for line in ir.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        _, op, _, attrs, ty, dev, name = m.groups()
        kv = dict(ATTR.findall(attrs))
        if op == "input" and kv.get("kind") == "tensor":
            shape = [int(d) for d in re.search(r"\[([\d,]+)\]", ty).group(1).split(",")]
        elif op == "input" and kv.get("kind") == "labels":
            classes = int(re.search(r"class\((\d+)\)", ty).group(1))
        elif op == "param":
            dims = [int(d) for d in re.search(r"\[([\d,]*)\]", ty).group(1).split(",") if d]
            init = kv.get("init", "")
            try:
                value = np.full(dims, float(init), dtype=np.float32)
            except ValueError:
                fan_in = max(1, int(np.prod(dims[1:]))) if len(dims) > 1 else 1
                value = (rng.standard_normal(dims) * math.sqrt(2.0 / fan_in)).astype(np.float32)
            tensors[f"{name}@{dev}"] = value
    if shape is None or classes is None:
        raise RuntimeError("no image input or no class labels in the IR")
    net = NetcModule(ir, tensors).train()
    groups = {}
    for key in net.param_keys:
        s = settings[key]
        g = (s["momentum"], s["weight_decay"] * s["decay_mult"], s["lr_mult"], s["nesterov"])
        groups.setdefault(g, []).append(net.param(key))
    base_lr = 0.01
    opt = torch.optim.SGD(
        [{"params": ps, "momentum": m, "weight_decay": wd, "lr": base_lr * lm, "nesterov": n}
         for (m, wd, lm, n), ps in groups.items()],
        lr=base_lr,
    )
    return net, opt, shape, classes, smoothing


def worker(a):
    """One peer: builds, warms up, then times `steps` steps per request."""
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch
    import torch.nn.functional as F

    out = sys.stdout
    sys.stdout = sys.stderr  # torch's chatter away from the protocol

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    try:
        t0 = time.perf_counter()
        net, opt, shape, classes, smoothing = build(a.netc, a.worker)
        x = torch.randn(a.batch, *shape)
        y = torch.randint(0, classes, (a.batch,))
        model, opt_step = net, opt.step
        if a.mode == "compile":
            model = torch.compile(net)
            opt_step = torch.compile(opt.step)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=smoothing).backward()
            opt_step()

        step()  # compiles, in compile mode
        step()  # compiles the optimizer's step again, now with momentum buffers
        ready = time.perf_counter() - t0
        t = time.perf_counter()
        step()
        per_step = time.perf_counter() - t
        say({"ready": True, "setup_s": ready, "step_s": per_step,
             "torch": torch.__version__, "threads": torch.get_num_threads()})
    except Exception as e:  # noqa: BLE001 -- reported in the table
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        say({"error": (msg[0] if msg else type(e).__name__)[:300]})
        return 1
    for line in sys.stdin:
        steps = int(line)
        t = time.perf_counter()
        for _ in range(steps):
            step()
        dt = time.perf_counter() - t
        say({"rate": a.batch * steps / dt, "seconds": dt})
    return 0


class Peer:
    def __init__(self, args, net, mode, batch, log):
        self.mode, self.error, self.info = mode, None, {}
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        if args.omp_wait_policy != "default":
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", net, "--mode", mode,
             "--batch", str(batch), "--threads", str(args.threads), "--netc", args.netc],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        msg = self.read(args.compile_timeout)
        if msg is None:
            self.error = f"no result after {args.compile_timeout} s (compilation and one step)"
            self.close()
        elif "error" in msg:
            self.error = msg["error"]
            self.close()
        else:
            self.info = msg

    def read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return None
        line = self.p.stdout.readline()
        if not line:
            return {"error": f"the peer exited (status {self.p.wait()}) without a result"}
        return json.loads(line)

    def time(self, steps):
        if self.error:
            return None
        self.p.stdin.write(f"{steps}\n")
        self.p.stdin.flush()
        msg = self.read(None)
        if "error" in msg:
            self.error = msg["error"]
            self.close()
            return None
        return msg["rate"]

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


# ---------------------------------------------------------------- the driver --

def file_batch(netc, net):
    text = subprocess.run([netc, "fmt", "--stdout", net], capture_output=True, text=True).stdout
    m = re.search(r"\btrain\s*\{[^}]*?\bbatch\s*:\s*(\d+)", re.sub(r"//[^\n]*", "", text), re.S)
    return int(m.group(1)) if m else 128


def netc_bench(args, net, batch, steps):
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    p = subprocess.run([args.netc, "bench", net, "--batch", str(batch), "--steps", str(steps)],
                       capture_output=True, text=True, env=env)
    m = re.search(r": ([0-9.]+) images/s", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError((p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1])
    return float(m.group(1))


def fmt_rate(v):
    return "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:,.1f}")


def summary(xs):
    return statistics.median(xs) if xs else None


def ratio_cell(ratios):
    if not ratios:
        return "—"
    med = statistics.median(ratios)
    return f"**{med:.2f}** ({min(ratios):.2f}–{max(ratios):.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nets", nargs="*", help="the .net files (default: every networks/*.net)")
    ap.add_argument("--pairs", type=int, default=5, help="rounds per network (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="one batch for every network")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per figure")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="aim of one timing when --steps is not given (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 rounds of 2 steps")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--compile-timeout", type=float, default=900.0)
    ap.add_argument("--omp-wait-policy", choices=["passive", "active", "default"],
                    default="passive",
                    help="OMP_WAIT_POLICY of the PyTorch peers (default passive; see above)")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    ap.add_argument("--raw", default=None, help="write every round's figures (JSON) here")
    ap.add_argument("--netc", default=os.path.join(ROOT, "target", "release", "netc"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="eager", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not os.path.exists(args.netc):
        sys.exit(f"{args.netc}: no netc binary (cargo build --release, or --netc PATH)")
    if args.quick:
        args.pairs, args.steps = min(args.pairs, 2), args.steps or 2
    nets = args.nets or sorted(glob.glob(os.path.join(ROOT, "networks", "*.net")))
    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    log = tempfile.NamedTemporaryFile("w", prefix="peers-", suffix=".log", delete=False)
    print(f"peers' messages: {log.name}", file=sys.stderr)
    rows, raw, all_loads = [], [], []
    started = time.time()
    for net in nets:
        name = os.path.splitext(os.path.basename(net))[0]
        batch = args.batch or BIG.get(name) or file_batch(args.netc, net)
        t0 = time.time()
        peers = {}
        for mode in modes:
            peers[mode] = Peer(args, net, mode, batch, log)
            state = peers[mode].error or f"ready in {peers[mode].info['setup_s']:.1f} s"
            print(f"{name}: {mode} peer {state}", file=sys.stderr, flush=True)
        steps = args.steps
        if steps is None:
            step_s = peers["eager"].info.get("step_s") if not peers["eager"].error else None
            steps = max(2, round(args.seconds / step_s)) if step_s else 5
        res = {"netc": [], **{m: [] for m in modes}}
        netc_error = None
        loads = []
        for r in range(args.pairs):
            line = []
            try:
                v = netc_bench(args, net, batch, steps)
                res["netc"].append(v)
                line.append(f"netc {v:.1f}")
            except RuntimeError as e:
                netc_error = str(e)
                line.append(f"netc failed: {netc_error}")
            for mode in modes:
                v = peers[mode].time(steps)
                if v is not None:
                    res[mode].append(v)
                line.append(f"{mode} {fmt_rate(v)}")
            load = os.getloadavg()[0]
            loads.append(load)
            print(f"{name} batch {batch} steps {steps} round {r + 1}: " + ", ".join(line)
                  + f" (load {load:.1f})",
                  file=sys.stderr, flush=True)
            if netc_error and all(peers[m].error for m in modes):
                break
        for p in peers.values():
            p.close()
        n = len(res["netc"])
        ratios = {m: [a / b for a, b in zip(res["netc"], res[m])]
                  for m in modes if len(res[m]) == n and n}
        raw.append({"network": name, "batch": batch, "steps": steps, "threads": args.threads,
                    "rates": res, "errors": {m: peers[m].error for m in modes if peers[m].error},
                    "netc_error": netc_error, "load_1min": loads, "seconds": time.time() - t0})
        rows.append((name, batch, steps, res, ratios, peers, netc_error))
        all_loads.extend(loads)
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    head = ("| network | batch | steps × pairs | netc img/s | PyTorch eager img/s | "
            "`torch.compile` img/s | netc / eager | netc / compile |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, batch, steps, res, ratios, peers, netc_error in rows:
        cells = [f"`{name}.net`", str(batch), f"{steps} × {len(res['netc'])}",
                 fmt_rate(summary(res["netc"])) if not netc_error else "fails"]
        for mode in ("eager", "compile"):
            if mode not in peers:
                cells.append("not run")
            elif peers[mode].error and not res[mode]:
                cells.append("fails")
                notes.append(f"- `{name}.net`, {mode}: {peers[mode].error}")
            else:
                cells.append(fmt_rate(summary(res[mode])))
        for mode in ("eager", "compile"):
            cells.append(ratio_cell(ratios.get(mode)))
        if netc_error:
            notes.append(f"- `{name}.net`, netc: {netc_error}")
        lines.append("| " + " | ".join(cells) + " |")
    import torch  # only for the version line

    lines.append("")
    lines.append(f"Medians of {args.pairs} rounds (netc, eager, compile in turn), ratios the median "
                 f"of the per-round ratios (range in brackets); {args.threads} threads each side; "
                 f"OMP_WAIT_POLICY {args.omp_wait_policy}; PyTorch {torch.__version__}; "
                 f"{time.time() - started:.0f} s in all; 1-minute load average after the "
                 f"rounds {min(all_loads, default=0):.1f} to {max(all_loads, default=0):.1f} "
                 f"on {os.cpu_count()} cores.")
    lines += notes
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(raw, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
