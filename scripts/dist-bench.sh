#!/usr/bin/env bash
# netc on 2 ranks x 1 thread against netc on 1 process x 2 threads, the same
# network, data and global batch, alternating, ROUNDS times each. Prints the
# training images/s of each run's last epoch (evaluation excluded) and, for
# the ranks, how long rank 0's steps waited on the gradient sums.
#   scripts/dist-bench.sh [ROUNDS] [NET] [DATA]
# Needs a build with `--features mpi` and Open MPI's mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
NET=${2:-networks/alexnet-fmnist.net}
DATA=${3:-data/fmnist-small}
NETC=target/release/netc
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
args=(train "$NET" --data "$DATA" --batch 128 --seed 1 --epochs 2 --max-steps 12 --json)
rate() { grep '"epoch":2' | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["images_per_s"],1))'; }
for r in $(seq "$ROUNDS"); do
  one=$(RAYON_NUM_THREADS=2 "$NETC" "${args[@]}" --out "$OUT/one$r" 2>/dev/null | rate)
  two=$(mpirun --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 "$NETC" "${args[@]}" --out "$OUT/two$r" 2>"$OUT/err$r" | rate)
  wait_line=$(grep 'waited' "$OUT/err$r" | grep 'gradient' | tail -1 || true)
  echo "round $r: 1 process x 2 threads $one img/s; 2 ranks x 1 thread $two img/s; ${wait_line}"
done
