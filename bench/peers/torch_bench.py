#!/usr/bin/env python3
"""PyTorch eager peer for the kiln benchmarks.

Usage: python3 torch_bench.py dose|mlp|matmul [budget_s]
Times its own loop with time.perf_counter using the same protocol as
bench/timing.ts (first call alone, warm-up, samples of k iterations sized to
>= 2 ms, median per iteration) and prints one JSON object on stdout.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def measure(fn, warmup_s=0.5, min_warmup=2, sample_s=0.002, budget_s=3.0, min_samples=5, max_samples=200):
    t0 = time.perf_counter()
    v = fn()
    first = time.perf_counter() - t0
    warm = 0
    t0 = time.perf_counter()
    while warm < min_warmup or time.perf_counter() - t0 < warmup_s:
        fn()
        warm += 1
    est = (time.perf_counter() - t0) / warm
    k = max(1, int(-(-sample_s // max(est, 1e-9))))
    per = []
    start = time.perf_counter()
    while len(per) < min_samples or (len(per) < max_samples and time.perf_counter() - start < budget_s):
        s = time.perf_counter()
        for _ in range(k):
            fn()
        per.append((time.perf_counter() - s) / k)
    per.sort()
    m = len(per) // 2
    med = per[m] if len(per) % 2 else (per[m - 1] + per[m]) / 2
    return {
        "medianMs": med * 1e3,
        "minMs": per[0] * 1e3,
        "maxMs": per[-1] * 1e3,
        "iters": len(per) * k,
        "samples": len(per),
        "firstCallMs": first * 1e3,
        "firstValue": v if isinstance(v, float) else None,
    }


class BasicNN_train(nn.Module):
    """The StatQuest dose network, as in the tutorial (seeds/000)."""

    def __init__(self):
        super().__init__()
        self.w00 = nn.Parameter(torch.tensor(1.7), requires_grad=False)
        self.b00 = nn.Parameter(torch.tensor(-0.85), requires_grad=False)
        self.w01 = nn.Parameter(torch.tensor(-40.8), requires_grad=False)
        self.w10 = nn.Parameter(torch.tensor(12.6), requires_grad=False)
        self.b10 = nn.Parameter(torch.tensor(0.0), requires_grad=False)
        self.w11 = nn.Parameter(torch.tensor(2.7), requires_grad=False)
        self.final_bias = nn.Parameter(torch.tensor(0.0), requires_grad=True)

    def forward(self, input):
        top = F.relu(input * self.w00 + self.b00) * self.w01
        bottom = F.relu(input * self.w10 + self.b10) * self.w11
        return F.relu(top + bottom + self.final_bias)


def dose(budget_s):
    model = BasicNN_train()
    inputs = torch.tensor([0.0, 0.5, 1.0])
    labels = torch.tensor([0.0, 1.0, 0.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def epoch():
        total = 0.0
        for i in range(len(inputs)):
            out = model(inputs[i])
            loss = (out - labels[i]) ** 2
            loss.backward()
            total += float(loss)
        optimizer.step()
        optimizer.zero_grad()
        return total

    return measure(epoch, budget_s=budget_s)


def mlp(budget_s):
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    x = torch.rand(128, 784)
    y = torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    return measure(step, budget_s=budget_s)


def matmul(budget_s):
    """A 1024x1024x1024 float32 product (2 threads, the BLAS torch loaded)."""
    g = torch.Generator().manual_seed(42)
    a = torch.rand(1024, 1024, generator=g) * 2 - 1
    b = torch.rand(1024, 1024, generator=g) * 2 - 1
    return measure(lambda: torch.mm(a, b), budget_s=budget_s)


def cnn(budget_s):
    """One training step of PyTorch's MNIST Net (examples/mnist/main.py), batch 64, SGD lr 0.01 (bench/cnn.ts)."""
    import torch.nn.functional as F
    torch.manual_seed(1234)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
            self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
            self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
            x = F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
            return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)

    model = Net()
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return measure(step, budget_s=budget_s)


def blas_in_use():
    """Which libblas the process mapped (Debian's torch uses the libblas.so.3 alternative)."""
    import os
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line and "/" in line}
    except OSError:
        return "unknown"
    for p in sorted(paths):
        real = os.path.realpath(p)
        if "openblas" in real:
            return "OpenBLAS"
        if "blis" in real:
            return "BLIS"
        if "mkl" in real:
            return "MKL"
    return "reference BLAS (slow; apt-get install libopenblas0-pthread)" if paths else "unknown"


def main():
    which = sys.argv[1]
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(2)
    res = {"dose": dose, "mlp": mlp, "matmul": matmul, "cnn": cnn}[which](budget)
    res["torch"] = torch.__version__
    res["threads"] = torch.get_num_threads()
    res["blas"] = blas_in_use()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
