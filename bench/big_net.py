#!/usr/bin/env python3
"""Writes a generated network of LAYERS layers to stdout: half of them a
chain of ReLUs from the image to the loss, half dense layers that read the
image and feed nothing (each a warning). Used to time `netc check` on very
large graphs (BENCHMARKS.md, "Checking very large networks"); the test
`tests/passes.rs::a_network_of_100000_layers_checks_in_seconds` builds the
same network in Rust.

    python3 bench/big_net.py 100000 > /tmp/big.net
    /usr/bin/time -v target/release/netc check /tmp/big.net
"""
import sys

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
half = layers // 2
out = ["network big {", "  input image: [1, 8, 8]", "  input label: class(3)",
       "  h0 = dense(image, units: 4)"]
out += [f"  h{i} = relu(h{i - 1})" for i in range(1, half)]
out += [f"  u{i} = dense(image, units: 2)" for i in range(half)]
out += [f"  out = dense(h{half - 1}, units: 3)", "  loss = softmax_xent(out, label)", "}"]
print("\n".join(out))
