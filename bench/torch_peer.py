"""The PyTorch peer for `netc bench`: the same networks as networks/alexnet-fmnist.net
and networks/alexnet.net (two towers, cross-tower edges at conv3 and the dense
layers, tower-local LRN with the paper's alpha converted to PyTorch's convention,
overlapping pooling, dropout), trained with SGD + momentum + weight decay at the
same batch size, on synthetic data, on the same cores. Prints images/s.

    python3 bench/torch_peer.py fmnist 128 30
    python3 bench/torch_peer.py alexnet 32 10
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def lrn():
    # The paper's alpha 1e-4 is PyTorch's alpha 5e-4 (PyTorch divides by size).
    return nn.LocalResponseNorm(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)


class Towers(nn.Module):
    def __init__(self, cin, c1, k1, s1, p1, c2, k2, c3, c4, c5, fc_in, fc, classes):
        super().__init__()
        t = 2
        self.conv1 = nn.ModuleList([nn.Conv2d(cin, c1 // t, k1, s1, p1) for _ in range(t)])
        self.conv2 = nn.ModuleList([nn.Conv2d(c1 // t, c2 // t, k2, 1, k2 // 2) for _ in range(t)])
        self.conv3 = nn.ModuleList([nn.Conv2d(c2, c3 // t, 3, 1, 1) for _ in range(t)])
        self.conv4 = nn.ModuleList([nn.Conv2d(c3 // t, c4 // t, 3, 1, 1) for _ in range(t)])
        self.conv5 = nn.ModuleList([nn.Conv2d(c4 // t, c5 // t, 3, 1, 1) for _ in range(t)])
        self.fc6 = nn.ModuleList([nn.Linear(fc_in, fc // t) for _ in range(t)])
        self.fc7 = nn.ModuleList([nn.Linear(fc, fc // t) for _ in range(t)])
        self.fc8 = nn.Linear(fc, classes)
        self.norm = lrn()

    def forward(self, x):
        pool = lambda v: F.max_pool2d(v, 3, 2)
        a = [pool(self.norm(F.relu(c(x)))) for c in self.conv1]
        a = [pool(self.norm(F.relu(c(v)))) for c, v in zip(self.conv2, a)]
        g = torch.cat(a, 1)  # across(conv2)
        a = [F.relu(c(g)) for c in self.conv3]
        a = [F.relu(c(v)) for c, v in zip(self.conv4, a)]
        a = [pool(F.relu(c(v))) for c, v in zip(self.conv5, a)]
        g = torch.flatten(torch.cat(a, 1), 1)  # across(conv5)
        a = [F.dropout(F.relu(f(g)), 0.5, self.training) for f in self.fc6]
        g = torch.cat(a, 1)
        a = [F.dropout(F.relu(f(g)), 0.5, self.training) for f in self.fc7]
        return self.fc8(torch.cat(a, 1))


def build(which):
    if which == "fmnist":
        return Towers(1, 32, 5, 1, 2, 64, 3, 96, 96, 64, 256, 512, 10), (1, 28, 28), 10
    return Towers(3, 96, 11, 4, 0, 256, 5, 384, 384, 256, 9216, 4096, 1000), (3, 227, 227), 1000


def main():
    which, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    torch.manual_seed(0)
    net, shape, classes = build(which)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    net.train()
    for _ in range(2):  # warm-up
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    dt = time.perf_counter() - t
    print(f"torch {which} batch {batch}: {batch * steps / dt:.1f} images/s")


if __name__ == "__main__":
    main()
