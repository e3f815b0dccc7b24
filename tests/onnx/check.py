"""Checks an ONNX model netc wrote or read against netc's own logits.

    check.py MODEL.onnx INPUTS.f32 LOGITS.f32 [--tol 1e-4]

INPUTS.f32 holds the prepared images (float32, little-endian, N x C x H x W
as the model's input declares C, H, W); LOGITS.f32 the logits netc computed
for them (N x classes). The script runs `onnx.checker.check_model` (full
check, with shape inference), runs the model in onnxruntime, and compares
its `logits` output (or a foreign model's first output) with netc's: for each image, the largest absolute
difference over the classes divided by the largest magnitude of netc's
logits. It prints `worst relative error E (image I)` and `max |Δ| D`, and
exits 1 if E exceeds the tolerance, 2 on a model the checker refuses.
It also checks that `probabilities` is the softmax of `logits`.
"""

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    model = onnx.load(a.model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker's own error types vary by version
        print(f"check_model refused {a.model}: {e}")
        return 2
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    print(f"check_model: ok (ir {model.ir_version}, opset {opset}, {len(model.graph.node)} nodes)")

    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
    x = np.fromfile(a.inputs, dtype="<f4")
    per = int(np.prod(dims))
    if x.size % per != 0:
        print(f"{a.inputs}: {x.size} values are not whole {dims} images")
        return 1
    x = x.reshape([-1] + dims)
    n = x.shape[0]
    want = np.fromfile(a.logits, dtype="<f4").reshape(n, -1)

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    got = dict(zip(outs, sess.run(None, {inp.name: x})))
    # netc's models name it `logits`; another's first output is its logits.
    logits = got["logits"] if "logits" in got else got[outs[0]]
    if logits.shape != want.shape:
        print(f"logits shape {logits.shape}, netc's {want.shape}")
        return 1
    diff = np.abs(logits.astype(np.float64) - want.astype(np.float64)).max(axis=1)
    scale = np.maximum(np.abs(want.astype(np.float64)).max(axis=1), 1e-30)
    rel = diff / scale
    worst = int(rel.argmax())
    print(f"images: {n}, classes: {want.shape[1]}")
    print(f"worst relative error {rel[worst]:.3e} (image {worst})")
    print(f"max |delta| {diff.max():.3e}, max |logit| {np.abs(want).max():.3e}")
    agree = float((logits.argmax(1) == want.argmax(1)).mean())
    print(f"top-1 agreement {agree:.4f}")
    if "probabilities" in got:
        p = got["probabilities"].astype(np.float64)
        z = logits.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        z /= z.sum(axis=1, keepdims=True)
        perr = np.abs(p - z).max()
        print(f"probabilities vs softmax(logits): max |delta| {perr:.3e}")
        if perr > 1e-5:
            return 1
    return 0 if rel[worst] <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
