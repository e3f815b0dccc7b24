#!/usr/bin/env bash
# What fusion and the memory plan buy on the CPU: `netc bench` on the fused,
# planned step (the default) against the unfused step with every buffer
# apart (--no-fuse --no-plan), alternating A B A B, ROUNDS pairs per network.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4}
cargo build --release -q
netc=${NETC:-target/release/netc}
run() { "$netc" bench "$@" | head -1 | sed -E 's/.*: ([0-9.]+) images\/s.*/\1/'; }
for spec in "networks/alexnet-fmnist.net 128 10" "networks/alexnet.net 32 2"; do
  set -- $spec
  file=$1 batch=$2 steps=$3
  for r in $(seq "$ROUNDS"); do
    a=$(run "$file" --batch "$batch" --steps "$steps")
    b=$(run "$file" --batch "$batch" --steps "$steps" --no-fuse --no-plan)
    echo "$file batch $batch round $r: fused+planned $a, unfused+apart $b images/s, ratio $(python3 -c "print(f'{$a/$b:.3f}')")"
  done
done
