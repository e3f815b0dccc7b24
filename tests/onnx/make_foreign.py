"""Writes tests/onnx/torch-alexnet-small.onnx: a torchvision-style one-tower
AlexNet (the torchvision layer order, channels divided by 8, 3×127×127
inputs, 10 classes, no adaptive average pooling since netc has no average
pooling yet) with random weights (seed 0), exported by torch.onnx.export in
evaluation mode. tests/onnx.rs imports it into netc and compares netc's
logits with onnxruntime's on the same file; this script is only needed to
remake it (it needs PyTorch, which CI does not install).

    python tests/onnx/make_foreign.py [OUT.onnx]
"""

import sys

import torch
from torch import nn


class SmallAlexNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(8, 24, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(24, 48, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(48, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(32 * 3 * 3, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(128, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/onnx/torch-alexnet-small.onnx"
    torch.manual_seed(0)
    m = SmallAlexNet().eval()
    x = torch.randn(2, 3, 127, 127)
    torch.onnx.export(
        m,
        (x,),
        out,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        opset_version=13,
        dynamo=False,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
