#!/usr/bin/env bash
# Training throughput of netc and its PyTorch peers (eager and torch.compile),
# every network in networks/, alternating on the same cores: builds netc, then
# runs bench/peers.py with the arguments given (e.g. --pairs 7, --quick,
# --out table.md, or some .net files). Installs PyTorch with pip if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch" 2>/dev/null || pip install -q torch
cargo build --release -q
exec python3 bench/peers.py "$@"
