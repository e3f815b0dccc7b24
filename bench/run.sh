#!/usr/bin/env bash
# Training throughput of netc and its PyTorch peer, side by side on the same
# cores, alternating A B A B. Installs PyTorch with pip if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch" 2>/dev/null || pip install -q torch
cargo build --release -q
for round in 1 2; do
  target/release/netc bench networks/alexnet-fmnist.net --batch 128 --steps 20
  python3 bench/torch_peer.py fmnist 128 20 2 2>/dev/null
done
target/release/netc bench networks/alexnet.net --batch 32 --steps 3
python3 bench/torch_peer.py alexnet 32 3 2 2>/dev/null
