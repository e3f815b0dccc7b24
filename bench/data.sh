#!/bin/sh
# The data benchmarks of BENCHMARKS.md ("Data: prepare and the training
# loader"), netc and its peers in one run on the same cores:
#
#   bench/data.sh TREE WORK
#
# TREE: an image tree made by scripts/make-imagenet-like.py (train/ and val/);
# WORK: a scratch folder (created; several GB for large trees). Needs a
# release build (cargo build --release --example loader_throughput) and a
# Python with Pillow, numpy, torch and torchvision (PY=..., default python3).
#
# (a) prepare images/s: netc prepare against a PIL script doing the same
#     resize and crop, on one core (taskset -c 0) and on all;
# (b) loader images/s from 256-pixel JPEG: netc's loader against torchvision
#     ImageFolder + DataLoader over the same JPEG bytes, 1 worker on one core
#     and 2 workers on two;
# (c) the same from raw records against a numpy memmap in a DataLoader;
# (d) the peak memory of each (/usr/bin/time -v, maximum resident set size).
set -eu
TREE=$1
WORK=$2
PY=${PY:-python3}
NETC=${NETC:-target/release/netc}
LT=${LT:-target/release/examples/loader_throughput}
BATCHES=${BATCHES:-40}
mkdir -p "$WORK"

peak() { # command...: runs it, prints its output and its peak memory
    /usr/bin/time -v "$@" 2>"$WORK/time.txt" | grep -v '^$' || { cat "$WORK/time.txt"; exit 1; }
    grep -E 'Maximum resident' "$WORK/time.txt" | sed 's/^\s*/    /'
}

# ONLY=loader skips (a) (and reuses WORK/netc-2.netc from an earlier run).
echo "## (a) prepare"
[ "${ONLY:-}" = loader ] || for cores in 0 0-1; do
    n=$(echo "$cores" | awk -F- '{print NF}')
    rm -rf "$WORK/netc-$n.netc" "$WORK/pil-$n"
    echo "netc prepare, $n core(s):"
    peak taskset -c "$cores" "$NETC" prepare "$TREE" -o "$WORK/netc-$n.netc" | head -1
    echo "PIL:"
    peak taskset -c "$cores" "$PY" bench/data_peer.py prepare "$TREE" "$WORK/pil-$n" --jobs "$n"
done

echo "## (b) loader from 256-pixel JPEG; (c) from raw"
JPEG="$WORK/netc-2.netc"
RAW="$WORK/raw.netc"
[ -f "$RAW" ] || "$NETC" prepare "$TREE" -o "$RAW" --format raw >/dev/null
rm -rf "$WORK/jpeg-tree"
"$PY" bench/data_peer.py extract "$JPEG" "$WORK/jpeg-tree"
for cores in 0 0-1; do
    n=$(echo "$cores" | awk -F- '{print NF}')
    peak taskset -c "$cores" "$LT" "$JPEG" --workers "$n" --batches "$BATCHES"
    peak taskset -c "$cores" "$PY" bench/data_peer.py torchvision "$WORK/jpeg-tree" --workers "$n" --batches "$BATCHES"
    peak taskset -c "$cores" "$LT" "$RAW" --workers "$n" --batches "$BATCHES"
    peak taskset -c "$cores" "$PY" bench/data_peer.py memmap "$RAW" --workers "$n" --batches "$BATCHES"
done
