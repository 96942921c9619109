#!/usr/bin/env python3
"""PyTorch eager peer for the kiln benchmarks.

Usage: python3 torch_bench.py dose|mlp|matmul [budget_s]
       python3 torch_bench.py cnn|chargpt|makemore budget_s ARRAYS.json ARRAYS.bin
The model benchmarks (bench/models.ts) start from the weights and data the JavaScript side
wrote to ARRAYS.bin (named float32/int32 arrays back to back, described by ARRAYS.json), so
every framework runs the same numbers. Times its own loop with time.perf_counter using the same protocol as
bench/timing.ts (first call alone, warm-up, samples of k iterations sized to
>= 2 ms, median per iteration) and prints one JSON object on stdout.
"""
import json
import math
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


def load_arrays(spec_path, bin_path):
    """Named tensors from the file bench/peers/torch.ts wrote: [[name, dtype, shape], ...] + raw little-endian bytes."""
    with open(spec_path) as f:
        spec = json.load(f)
    with open(bin_path, "rb") as f:
        raw = bytearray(f.read())
    out, off = {}, 0
    for name, dtype, shape in spec:
        n = 1
        for d in shape:
            n *= d
        t = torch.frombuffer(raw, dtype=torch.float32 if dtype == "float32" else torch.int32, count=n, offset=off)
        out[name] = t.reshape(shape).clone()
        off += 4 * n
    if off != len(raw):
        raise ValueError(f"{bin_path}: {len(raw)} bytes, but the spec describes {off}")
    return out


def state(arrays, prefix):
    """The arrays named `prefix` + parameter name, as a state dict without the prefix."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


class MnistNet(nn.Module):
    """PyTorch's examples/mnist/main.py Net."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
        return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)


def cnn(budget_s, arrays):
    """One MNIST Net training step (batch 64), Adadelta lr 1.0 as main.py; weights and data from bench/models.ts."""
    torch.manual_seed(1)
    model = MnistNet()
    model.load_state_dict(state(arrays, "model."))
    x, y = arrays["x"], arrays["y"].long()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return measure(step, budget_s=budget_s, warmup_s=0, min_warmup=1, min_samples=3)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.cAttn = nn.Linear(n_embd, 3 * n_embd)
        self.cProj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in self.cAttn(x).split(C, dim=2))
        # torch 1.13 has no F.scaled_dot_product_attention: the same computation, spelled out
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return self.cProj((att @ v).transpose(1, 2).contiguous().view(B, T, C))


class Mlp(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.cFc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.cProj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.cProj(self.gelu(self.cFc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = Mlp(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """examples/char-gpt.ts's GPT with the same parameter names, so kiln's stateDict loads as is."""

    def __init__(self, vocab, block, n_layer, n_head, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.lnF = nn.LayerNorm(n_embd)
        self.lmHead = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        return self.lmHead(self.lnF(x))


def chargpt(budget_s, arrays):
    """One char-gpt.ts training step: cross-entropy, backward, clip_grad_norm_(1.0), AdamW (decay on matrices only)."""
    cfg = arrays["config"].tolist()  # vocab, block, layers, heads, width
    model = CharGPT(*cfg)
    model.load_state_dict(state(arrays, "model."))
    x, y = arrays["x"].long(), arrays["y"].long()
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99))

    def step():
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        return loss.item()

    return measure(step, budget_s=budget_s, warmup_s=0, min_warmup=1, min_samples=3)


def makemore(budget_s, arrays):
    """One makemore.ts step (Bengio MLP: C[X], tanh layer, cross-entropy), SGD lr 0.1, weights from kiln."""
    p = {k: v.requires_grad_() for k, v in state(arrays, "model.").items()}
    X, Y = arrays["x"].long(), arrays["y"].long()
    opt = torch.optim.SGD(p.values(), lr=0.1)

    def step():
        emb = p["C"][X]
        h = torch.tanh(emb.view(-1, p["W1"].shape[0]) @ p["W1"] + p["b1"])
        loss = F.cross_entropy(h @ p["W2"] + p["b2"], Y)
        loss.backward()
        opt.step()
        opt.zero_grad()
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


MODELS = {"cnn": cnn, "chargpt": chargpt, "makemore": makemore}


def main():
    which = sys.argv[1]
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(2)
    if which in MODELS:
        res = MODELS[which](budget, load_arrays(sys.argv[3], sys.argv[4]))
    else:
        res = {"dose": dose, "mlp": mlp, "matmul": matmul}[which](budget)
    res["torch"] = torch.__version__
    res["threads"] = torch.get_num_threads()
    res["blas"] = blas_in_use()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
