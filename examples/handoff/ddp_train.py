"""PyTorch continues kiln's training with DistributedDataParallel (examples/handoff/README in notes).

Loads kiln's checkpoint (model + SGD state, PyTorch names) into the same nn.Module, trains it with
DDP on `--world-size` local CPU processes (gloo backend, torch.multiprocessing.spawn), each process
taking its share of every batch (DDP averages the gradients, so the update is the full batch's),
and saves a checkpoint in the same layout for kiln to load back. Rank 0 writes a JSON report: the
loss on the probe batch right after loading and after training, and after one extra plain step on
the `extra` batch (to check that the optimizer state came back to kiln intact).

    python3 examples/handoff/ddp_train.py --checkpoint kiln.safetensors --data data.safetensors \
        --out torch.safetensors --report report.json --world-size 2
"""
import argparse
import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import safetensors_io as st


class NeuralNetwork(nn.Module):
    """examples/mnist-mlp.ts's model, attribute for attribute (kiln's linearReluStack is linear_relu_stack)."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


def make_optimizer(params, group):
    # The hyper-parameters come from kiln's checkpoint; load_state_dict then restores lr and buffers.
    return torch.optim.SGD(params, lr=group['lr'], momentum=group['momentum'], dampening=group['dampening'],
                           weight_decay=group['weight_decay'], nesterov=group['nesterov'])


def probe_loss(model, data):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(data['probe_images']), data['probe_labels'].long()).item()


def worker(rank, args):
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(args.port)
    dist.init_process_group('gloo', rank=rank, world_size=args.world_size)

    ckpt = st.load_tree(args.checkpoint)
    data = st.load_flat(args.data)
    model = NeuralNetwork()
    model.load_state_dict(ckpt['model'])
    ddp = DDP(model)
    opt = make_optimizer(ddp.parameters(), ckpt['optimizer']['param_groups'][0])
    opt.load_state_dict(ckpt['optimizer'])
    report = {'loaded': probe_loss(model, data), 'losses': []}

    images, labels = data['images'], data['labels'].long()
    steps = images.shape[0] // args.batch_size
    for s in range(steps):
        batch = slice(s * args.batch_size, (s + 1) * args.batch_size)
        # This rank's share of the batch: equal shares, so DDP's averaged gradient is the batch's.
        x, y = images[batch][rank::args.world_size], labels[batch][rank::args.world_size]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        report['losses'].append(loss.item())

    if rank == 0:
        report['trained'] = probe_loss(model, data)
        st.save_tree(args.out, {'model': model.state_dict(), 'optimizer': opt.state_dict()})
        # One more plain step on the `extra` batch: kiln, resuming from the saved state, must match it.
        opt.zero_grad()
        nn.functional.cross_entropy(model(data['extra_images']), data['extra_labels'].long()).backward()
        opt.step()
        report['extra'] = probe_loss(model, data)
        report['steps'] = steps
        report['world_size'] = dist.get_world_size()
        with open(args.report, 'w') as f:
            json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--data', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--report', required=True)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--world-size', type=int, default=2)
    p.add_argument('--port', type=int, default=0)
    args = p.parse_args()
    if args.batch_size % args.world_size:
        raise SystemExit(f'--batch-size {args.batch_size} must split evenly over {args.world_size} processes')
    args.port = args.port or free_port()
    mp.spawn(worker, args=(args,), nprocs=args.world_size, join=True)
