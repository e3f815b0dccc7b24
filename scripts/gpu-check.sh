#!/usr/bin/env bash
# GPU checks for netc's CUDA backend, for a machine with an NVIDIA GPU,
# CUDA 13 and PyTorch in `python3`, and no package registry. The release
# binary target/release/netc is expected prebuilt (cargo build --release).
#
#   scripts/gpu-check.sh [STEPS]      (default 300 timed steps)
#
# 1. GPU-vs-CPU parity of one fused training step of alexnet-fmnist.net
#    (batch 32, and its unfused step) and alexnet.net (batch 8), memory laid
#    out by the plan: every buffer still holding its value after the step
#    (updated weights and velocities, loss, logits), worst first, PASS/FAIL;
#    then alexnet-fmnist.net with every buffer in its own memory
#    (--separate): every node's buffer (the output of each generated kernel
#    or GEMM step, gradients included). Then the step placed with each
#    tower on its own device (--devices): two streams of GPU 0, and GPUs 0
#    and 1 when there are two.
#    Each planned one-GPU parity run also replays the step captured as a
#    CUDA graph for 6 staged steps against issuing it launch by launch
#    (PASS: equal).
# 2. Training throughput of alexnet.net (batch 128: fused with graph
#    replay, with per-kernel and per-layer times (--profile); without
#    replay (--no-graph); with each batch staged through page-locked memory
#    (--stage); with 256 and 1024 MiB of convolution workspace instead of
#    64 (fewer, larger chunks); and unfused) and
#    alexnet-fmnist.net (batch 128): netc on the GPU, PyTorch eager and
#    torch.compile on the same GPU (bench/torch_peer.py defines the PyTorch
#    networks).
# 3. `netc train --backend cuda` (host and device augmentation; evaluation
#    on the GPU) against `--backend cpu` on the embedded subset: the epoch's
#    train and test loss, PASS/FAIL; with `--no-plan` (every buffer apart)
#    against the planned step.
#
# Not yet run on a GPU since the backend interface moved under src/backend/
# (check these first): CudaStep::build (the program generated from the
# mirror's memory plan, `generate_planned`), CudaStep's submit, prefetch and
# collect (backend::step::Step), step::open::{probe, open, open_placed} (arch,
# replay and layout from the typed CudaConfig), the Device impl of CudaExec
# (moved beside it, unchanged), step::check's prepare (parameters from
# ParamStore) and profile (now grouped by layer through the program's typed
# NodeRef), CudaStep::first_non_finite (reads BufferDecl.node, not a name),
# and the cuda-check reports (step::report).
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-300}"
NETC=target/release/netc
[ -x "$NETC" ] || { echo "error: $NETC is missing (build it with cargo build --release)"; exit 2; }

# NVRTC and cuBLAS: the CUDA toolkit's lib64, or the nvidia-* wheels PyTorch ships.
LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/*/lib \
  $(python3 - <<'PY' 2>/dev/null
import os
try:
    import nvidia
    for p in nvidia.__path__:
        for root, dirs, files in os.walk(p):
            if any(f.startswith(("libnvrtc.so", "libcublas.so")) for f in files):
                print(root)
except Exception:
    pass
PY
); do
  [ -d "$d" ] && LIBS="$LIBS:$d"
done
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=sm_${CAP:-80}
case "$ARCH" in sm_80|sm_90|sm_100) ;; *) ARCH=sm_80 ;; esac
echo "== device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1) arch $ARCH"

status=0
echo "== parity: one training step, GPU vs CPU executor (per buffer, relative to the buffer's scale)"
timeout 300 "$NETC" cuda-check networks/alexnet-fmnist.net --batch 32 --arch "$ARCH" || status=1
timeout 300 "$NETC" cuda-check networks/alexnet-fmnist.net --batch 32 --arch "$ARCH" --no-fuse || status=1
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 8 --arch "$ARCH" || status=1
timeout 300 "$NETC" cuda-check networks/alexnet-fmnist.net --batch 32 --arch "$ARCH" --separate || status=1
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 8 --arch "$ARCH" --devices 0,0 || status=1
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
  timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 8 --arch "$ARCH" --devices 0,1 || status=1
  timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --devices 0,1 || status=1
fi

echo "== throughput: $STEPS training steps, synthetic data"
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --profile || status=1
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --no-graph || status=1
for mib in 256 1024; do
  timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --workspace-mib $mib || status=1
done
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --stage || status=1
# The one-GPU tower layout: both towers on one stream (above) or each on its own (0,0).
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --devices 0,0 || status=1
timeout 300 "$NETC" cuda-check networks/alexnet.net --batch 128 --steps "$STEPS" --arch "$ARCH" --no-fuse || status=1
timeout 300 "$NETC" cuda-check networks/alexnet-fmnist.net --batch 128 --steps "$STEPS" --arch "$ARCH" || status=1

timeout 420 python3 - "$STEPS" <<'PY' || status=1
import sys, time
sys.path.insert(0, "bench")
import torch
import torch.nn.functional as F
from torch_peer import build

steps = int(sys.argv[1])
dev = "cuda"
# Full FP32 on both sides: netc uses no TF32, so PyTorch must not either
# (cuDNN convolutions default to TF32).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
for which, batch in (("alexnet", 128), ("fmnist", 128)):
    # torch.compile takes minutes to compile; it is measured on alexnet.net only.
    for mode in (("eager", "compile") if which == "alexnet" else ("eager",)):
        torch.manual_seed(0)
        net, shape, classes = build(which)
        net = net.to(dev).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        x = torch.randn(batch, *shape, device=dev)
        y = torch.randint(0, classes, (batch,), device=dev)

        def step(model):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        model = torch.compile(net) if mode == "compile" else net
        for _ in range(3):
            step(model)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(steps):
            step(model)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"torch-{mode} {which} batch {batch}: {batch * steps / dt:.1f} images/s, peak memory {peak:.1f} MiB")
        del model, net, opt, x, y
        torch.cuda.empty_cache()
PY

echo "== training: netc train --backend cuda against --backend cpu (embedded subset, one epoch of 20 steps, batch 32)"
T=$(mktemp -d)
for b in cpu cuda; do
  timeout 300 "$NETC" train networks/alexnet-fmnist.net --data data/fmnist-small --epochs 1 \
    --max-steps 20 --batch 32 --backend "$b" --out "$T/$b" 2>&1 | tail -3 || status=1
done
# Augmentation on the device: the same figures as host augmentation, bit for bit.
timeout 300 "$NETC" train networks/alexnet-fmnist.net --data data/fmnist-small --epochs 1 \
  --max-steps 20 --batch 32 --backend cuda --device-augment --out "$T/cuda-aug" 2>&1 | tail -3 || status=1
if cmp -s <(head -c 200 "$T/cuda/metrics.jsonl" | sed 's/"images_per_s".*//') \
          <(head -c 200 "$T/cuda-aug/metrics.jsonl" | sed 's/"images_per_s".*//'); then
  echo "device augmentation: PASS (same metrics as host augmentation)"
else
  echo "device augmentation: FAIL"; head -1 "$T/cuda/metrics.jsonl" "$T/cuda-aug/metrics.jsonl"; status=1
fi
python3 - "$T" <<'PY' || status=1
import json, sys
cpu, gpu = (json.loads(open(f"{sys.argv[1]}/{b}/metrics.jsonl").readline()) for b in ("cpu", "cuda"))
rel = lambda k: abs(gpu[k] - cpu[k]) / max(abs(cpu[k]), 1e-12)
ok = rel("train_loss") <= 1e-3 and rel("test_loss") <= 1e-2
for k in ("train_loss", "test_loss", "top1_error", "images_per_s"):
    print(f"  {k:>12}: cuda {gpu[k]:.6g}  cpu {cpu[k]:.6g}")
print("train parity:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
# `--no-plan` on the GPU: every buffer apart, the same figures as the planned step.
timeout 300 "$NETC" train networks/alexnet-fmnist.net --data data/fmnist-small --epochs 1 \
  --max-steps 20 --batch 32 --backend cuda --no-plan --out "$T/cuda-sep" 2>&1 | tail -3 || status=1
if cmp -s <(head -c 200 "$T/cuda/metrics.jsonl" | sed 's/"images_per_s".*//') \
          <(head -c 200 "$T/cuda-sep/metrics.jsonl" | sed 's/"images_per_s".*//'); then
  echo "no-plan layout: PASS (same metrics as the planned step)"
else
  echo "no-plan layout: FAIL"; head -1 "$T/cuda/metrics.jsonl" "$T/cuda-sep/metrics.jsonl"; status=1
fi
# `netc eval` of the CUDA run's checkpoint: GPU against CPU (same weights).
for b in cpu cuda; do
  timeout 120 "$NETC" eval networks/alexnet-fmnist.net --data data/fmnist-small \
    --weights "$T/cuda/checkpoint.safetensors" --backend "$b" > "$T/eval-$b.txt" 2>&1 || status=1
  echo "  eval --backend $b: $(tail -1 "$T/eval-$b.txt")"
done
python3 - "$T" <<'PY' || status=1
import re, sys
loss = [float(re.search(r"loss ([0-9.]+)", open(f"{sys.argv[1]}/eval-{b}.txt").read().splitlines()[-1]).group(1)) for b in ("cpu", "cuda")]
ok = abs(loss[0] - loss[1]) <= 1e-3 * max(loss[0], 1e-12)
print("eval parity:", "PASS" if ok else "FAIL", loss)
sys.exit(0 if ok else 1)
PY
rm -rf "$T"

echo "== on the host still: \`netc sweep\` (CPU executor)"
exit $status
