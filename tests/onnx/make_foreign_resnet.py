"""Writes tests/onnx/torch-resnet-small.onnx: a torchvision-style ResNet for
1×28×28 images (torchvision's BasicBlock with batchnorm and a 1×1
projection on strided shortcuts, a padded 3×3 max pool after the stem,
adaptive average pooling to 1×1, `torch.flatten`, one linear layer; 8, 16
and 32 channels, 10 classes), a LeakyReLU and a Tanh in the head so that
those operators come from PyTorch too. Random weights and random
batchnorm statistics (seed 0), exported by torch.onnx.export in
evaluation mode with the batchnorms kept as BatchNormalization nodes.
tests/onnx.rs imports it into netc and compares netc's logits with
onnxruntime's on the same file; this script is only needed to remake it
(it needs PyTorch, which CI does not install).

    python tests/onnx/make_foreign_resnet.py [OUT.onnx]
"""

import sys

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class SmallResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.layer3 = BasicBlock(16, 32, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc1 = nn.Linear(32, 32)
        self.act = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(32, 16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        x = torch.tanh(self.fc2(self.act(self.fc1(x))))
        return self.fc(x)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/onnx/torch-resnet-small.onnx"
    torch.manual_seed(0)
    m = SmallResNet()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = torch.rand(c) + 0.5
            mod.bias.data = torch.randn(c) * 0.1
            mod.running_mean = torch.randn(c) * 0.1
            mod.running_var = torch.rand(c) + 0.5
    m.eval()
    x = torch.randn(2, 1, 28, 28)
    torch.onnx.export(
        m,
        (x,),
        out,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        opset_version=13,
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
