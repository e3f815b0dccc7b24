#!/usr/bin/env python3
"""Data-parallel scaling on paper: predicted step time and efficiency of
netc's data-parallel training at 8, 64 and 256 GPUs, from a measured compute
time per step and the gradient bytes, for a ring all-reduce at stated link
speeds, with and without overlapping the reduction with the backward pass.

Model (stated, not measured):
- ring all-reduce of S bytes over N ranks at link bandwidth B (bytes/s, per
  direction per rank) and per-message latency a:
      T = 2(N-1)/N * S/B + k * 2(N-1) * a,   k = buckets of about 25 MB;
- the backward pass is `--backward` of the compute time (2/3 by default: it
  runs two GEMMs per layer to the forward's one); with overlap, the sums run
  while it does, and what shows is max(T - backward, one bucket's time);
- weak scaling: every GPU keeps the measured per-GPU batch (the global
  batch grows with N); strong scaling: the global batch stays the paper's
  128, each GPU takes 128/N, and its compute time shrinks in proportion (an
  optimistic assumption: small batches use a GPU less well);
- efficiency = compute time / step time.

Defaults: alexnet.net's 60,965,224 parameters (4 bytes each) and 22.95 ms per
step at batch 128 on one H200 (5,578 images/s, BENCHMARKS.md).

    scripts/scaling.py [--step-ms 22.95] [--batch 128] [--params 60965224]
"""

import argparse
import math

LINKS = [
    # name, bytes/s per direction, latency per message (s), largest N it spans
    ("NVLink (450 GB/s)", 450e9, 3e-6, 8),
    ("400 Gb/s IB/Ethernet", 50e9, 5e-6, None),
    ("100 Gb/s Ethernet", 12.5e9, 10e-6, None),
]
BUCKET = 25 * 2**20


def allreduce(n, size, bw, lat):
    if n == 1:
        return 0.0
    k = max(1, math.ceil(size / BUCKET))
    return 2 * (n - 1) / n * size / bw + k * 2 * (n - 1) * lat


def step(compute, backward_frac, n, size, bw, lat, overlap):
    t = allreduce(n, size, bw, lat)
    if not overlap:
        return compute + t, t
    last = allreduce(n, min(size, BUCKET), bw, lat)
    exposed = max(t - backward_frac * compute, last if n > 1 else 0.0)
    return compute + exposed, exposed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step-ms", type=float, default=1000 * 128 / 5578)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--params", type=int, default=60_965_224)
    ap.add_argument("--backward", type=float, default=2 / 3)
    a = ap.parse_args()
    size = 4 * a.params
    per_image = a.step_ms / 1e3 / a.batch
    print(
        f"gradient {size / 1e6:.0f} MB, compute {a.step_ms:.2f} ms per step of {a.batch} "
        f"per GPU, backward {a.backward:.2f} of it\n"
    )
    for regime in ("weak", "strong"):
        print(
            f"### {'Weak scaling: ' + str(a.batch) + ' images per GPU' if regime == 'weak' else 'Strong scaling: global batch 128 (the paper)'}\n"
        )
        print("| link | GPUs | compute ms | all-reduce ms | step ms, no overlap | efficiency | step ms, overlap | efficiency |")
        print("|---|---|---|---|---|---|---|---|")
        for name, bw, lat, span in LINKS:
            for n in (8, 64, 256):
                if span is not None and n > span:
                    continue
                per_gpu = a.batch if regime == "weak" else 128 / n
                compute = per_image * per_gpu
                t = allreduce(n, size, bw, lat)
                s0, _ = step(compute, a.backward, n, size, bw, lat, False)
                s1, _ = step(compute, a.backward, n, size, bw, lat, True)
                print(
                    f"| {name} | {n} | {compute * 1e3:.2f} | {t * 1e3:.2f} | {s0 * 1e3:.2f} | "
                    f"{100 * compute / s0:.0f}% | {s1 * 1e3:.2f} | {100 * compute / s1:.0f}% |"
                )
        print()
    # Where the paper's run (global batch 128) turns communication-bound:
    # the all-reduce takes longer than the compute it would hide behind.
    print("Communication-bound (all-reduce longer than the step's compute), global batch 128:")
    for name, bw, lat, _ in LINKS:
        for n in range(2, 1025):
            compute = per_image * 128 / n
            if allreduce(n, size, bw, lat) > compute:
                print(f"- {name}: from {n} GPUs")
                break


if __name__ == "__main__":
    main()
