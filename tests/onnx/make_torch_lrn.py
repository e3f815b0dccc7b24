"""Exports a LeNet-5-like network with nn.LocalResponseNorm (random
weights) by PyTorch's exporters, where PyTorch (and onnxscript, for the
default exporter) is installed:

    make_torch_lrn.py OUT_DIR

OUT_DIR/torch-lrn-ts11.onnx, torch-lrn-ts17.onnx (TorchScript exporter,
opsets 11 and 17, dynamic batch) and torch-lrn-dynamo.onnx (the default,
dynamo exporter, dynamic batch), on N x 3 x 32 x 32. Prints the files
written; exits 3 where torch cannot be imported.
"""

import os
import sys
import warnings

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit(3)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x):
        x = self.pool(self.lrn(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(x, 1))


def main():
    out = sys.argv[1]
    warnings.simplefilter("ignore")
    torch.manual_seed(26)
    m = LeNet().eval()
    # Larger activations, so that the LRN's denominator matters.
    with torch.no_grad():
        m.c1.weight.mul_(20.0)
    x = torch.randn(2, 3, 32, 32)
    for opset in (11, 17):
        path = os.path.join(out, f"torch-lrn-ts{opset}.onnx")
        torch.onnx.export(m, (x,), path, dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "N"}})
        print(f"wrote {path}")
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        print("no onnxscript: the default exporter is not run")
        return
    path = os.path.join(out, "torch-lrn-dynamo.onnx")
    torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
