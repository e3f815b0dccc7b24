"""Checks the reference formulas netc's training settings are defined by
(README, `train` section) against PyTorch itself. Not part of the test
suite (PyTorch is not a dependency); run it by hand where PyTorch is
installed:

    python bench/torch_settings.py

1. Nesterov: netc's paper-form step (`d = λ·lr·w + lr·g; v ← μ·v − d;
   w ← w + μ·v − d`) against `torch.optim.SGD(nesterov=True)` on a small
   model with a fixed data stream, 50 steps at a constant rate.
2. Label smoothing: the loss `−Σ t·log softmax` and gradient
   `(softmax − t)/N` with `t = (1 − ε)·onehot + ε/K` against
   `CrossEntropyLoss(label_smoothing=ε)` and autograd.
3. Initialisers: the bounds and standard deviations netc uses against the
   samples of `torch.nn.init.*` and of PyTorch's default Conv2d/Linear.
4. Multipliers (lr 2, decay 0 on biases): netc's step against PyTorch with
   a parameter group for biases (`lr=2·lr, weight_decay=0`).
Prints the largest differences and exits non-zero if one is too large.
"""

import math
import sys

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
failures = []


def check(name, diff, tol):
    print(f"{name:58s} max |diff| = {diff:.3e}  (tol {tol:.0e})")
    if not diff <= tol:
        failures.append(name)


# ---- 1. Nesterov ----------------------------------------------------------
lr, mu, wd = 0.05, 0.9, 1e-3
model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
params0 = [p.detach().clone() for p in model.parameters()]
xs = [torch.randn(8, 6) for _ in range(50)]
ys = [torch.randint(0, 3, (8,)) for _ in range(50)]
loss_fn = torch.nn.CrossEntropyLoss()

opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mu, weight_decay=wd, nesterov=True)
for x, y in zip(xs, ys):
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
torch_w = [p.detach().clone() for p in model.parameters()]

with torch.no_grad():
    for p, p0 in zip(model.parameters(), params0):
        p.copy_(p0)
vel = [torch.zeros_like(p) for p in model.parameters()]
for x, y in zip(xs, ys):
    model.zero_grad()
    loss_fn(model(x), y).backward()
    with torch.no_grad():
        for p, v in zip(model.parameters(), vel):
            d = wd * lr * p + lr * p.grad
            v.mul_(mu).sub_(d)
            p.add_(mu * v - d)
diff = max((a - b).abs().max().item() for a, b in zip(torch_w, model.parameters()))
check("nesterov: paper form vs SGD(nesterov=True), 50 steps", diff, 1e-12)

# ---- 4. Multipliers -------------------------------------------------------
with torch.no_grad():
    for p, p0 in zip(model.parameters(), params0):
        p.copy_(p0)
weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
opt = torch.optim.SGD(
    [
        {"params": weights},
        {"params": biases, "lr": 2 * lr, "weight_decay": 0.0},
    ],
    lr=lr,
    momentum=mu,
    weight_decay=wd,
)
for x, y in zip(xs, ys):
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
torch_w = [p.detach().clone() for p in model.parameters()]
with torch.no_grad():
    for p, p0 in zip(model.parameters(), params0):
        p.copy_(p0)
vel = [torch.zeros_like(p) for p in model.parameters()]
for x, y in zip(xs, ys):
    model.zero_grad()
    loss_fn(model(x), y).backward()
    with torch.no_grad():
        for (n, p), v in zip(model.named_parameters(), vel):
            lm, dm = (2.0, 0.0) if n.endswith("bias") else (1.0, 1.0)
            e = lr * lm
            v.mul_(mu).sub_(wd * dm * e * p + e * p.grad)
            p.add_(v)
diff = max((a - b).abs().max().item() for a, b in zip(torch_w, model.parameters()))
check("multipliers: bias lr 2 decay 0 vs parameter groups", diff, 1e-12)

# ---- 2. Label smoothing ---------------------------------------------------
for eps in [0.1, 0.3]:
    z = torch.randn(16, 10, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    ref = torch.nn.CrossEntropyLoss(label_smoothing=eps)(z, y)
    ref.backward()
    t = torch.full((16, 10), eps / 10)
    t[torch.arange(16), y] += 1 - eps
    logp = torch.log_softmax(z.detach(), dim=1)
    ours = -(t * logp).sum(1).mean()
    grad = (logp.exp() - t) / 16
    check(f"label smoothing {eps}: loss", abs(ours.item() - ref.item()), 1e-12)
    check(f"label smoothing {eps}: gradient", (grad - z.grad).abs().max().item(), 1e-12)

# ---- 3. Initialisers ------------------------------------------------------
w = torch.empty(64, 48, 5, 5)
fan_in, fan_out = 48 * 25, 64 * 25


def rel(a, b):
    return abs(a - b) / b


def gain(nl, a=0.0):
    return {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2),
            "leaky_relu": math.sqrt(2 / (1 + a * a)), "selu": 0.75}[nl]


for nl in ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]:
    check(f"calculate_gain({nl})", abs(torch.nn.init.calculate_gain(nl, 0.2 if nl == "leaky_relu" else None) - gain(nl, 0.2)), 1e-15)
for mode, fan in [("fan_in", fan_in), ("fan_out", fan_out)]:
    torch.nn.init.kaiming_uniform_(w, a=0.3, mode=mode, nonlinearity="leaky_relu")
    bound = gain("leaky_relu", 0.3) * math.sqrt(3 / fan)
    check(f"kaiming_uniform(a 0.3, {mode}): max vs bound", rel(w.abs().max().item(), bound), 2e-3)
    torch.nn.init.kaiming_normal_(w, mode=mode, nonlinearity="relu")
    check(f"kaiming_normal(relu, {mode}): std", rel(w.std().item(), math.sqrt(2) / math.sqrt(fan)), 1e-2)
torch.nn.init.xavier_uniform_(w, gain=1.5)
check("xavier_uniform(gain 1.5): max vs bound", rel(w.abs().max().item(), 1.5 * math.sqrt(6 / (fan_in + fan_out))), 2e-3)
torch.nn.init.xavier_normal_(w, gain=0.5)
check("xavier_normal(gain 0.5): std", rel(w.std().item(), 0.5 * math.sqrt(2 / (fan_in + fan_out))), 1e-2)
conv = torch.nn.Conv2d(48, 64, 5)
check("Conv2d default weight: max vs 1/sqrt(fan_in)", rel(conv.weight.abs().max().item(), 1 / math.sqrt(fan_in)), 2e-3)
check("Conv2d default bias: |b| <= 1/sqrt(fan_in)", max(0.0, conv.bias.abs().max().item() - 1 / math.sqrt(fan_in)), 0.0)
lin = torch.nn.Linear(500, 300)
check("Linear default weight: max vs 1/sqrt(in)", rel(lin.weight.abs().max().item(), 1 / math.sqrt(500)), 2e-3)

if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("all match")
