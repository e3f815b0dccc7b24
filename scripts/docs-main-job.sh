#!/usr/bin/env bash
# Records the main job's output for the README and the book: the command, the
# date, the machine and what it printed, into docs/src/recorded/main-job.txt,
# and what `netc predict` then says of the two images in examples/images/.
# The run takes minutes, too long for `cargo test`, so its output is recorded
# here instead of being compared by tests/docs.rs. Run it after a change that
# moves the figures, and commit the file it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet
cmd=(train networks/alexnet-fmnist.net --data data/fmnist-small)
start=$(date +%s)
target/release/netc "${cmd[@]}" --out "$out/run" >"$out/stdout" 2>"$out/stderr"
secs=$(( $(date +%s) - start ))
predict=(predict networks/alexnet-fmnist.net --weights out/checkpoint.safetensors --top 3
  examples/images/ankle-boot.png examples/images/trouser.png)
{
  echo "\$ cargo run --release -- ${cmd[*]}"
  cat "$out/stderr" "$out/stdout" | sed "s|$out/run|out|g"
  echo "\$ netc ${predict[*]}"
  target/release/netc "${predict[@]/#out\//$out/run/}" 2>&1
  echo
  echo "# recorded $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD):"
  echo "# ${secs} s wall on $(nproc) cores ($(uname -m)); images/s and the wait for data vary from run to run"
} >docs/src/recorded/main-job.txt
cat docs/src/recorded/main-job.txt
