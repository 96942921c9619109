// Benchmark: one training step of PyTorch's MNIST Net (examples/mnist/main.py, as examples/mnist-cnn.ts):
// Conv2d(1, 32, 3) -> ReLU -> Conv2d(32, 64, 3) -> ReLU -> max_pool2d(2) -> Dropout(0.25) -> Linear(9216, 128)
// -> ReLU -> Dropout(0.5) -> Linear(128, 10) -> log_softmax, nll_loss, batch 64, SGD lr 0.01, on fixed-seed
// random data; each iteration reads the loss back. kiln compiled vs kiln eager on the CPU, and PyTorch.
import { finishTable, measure, rowFrom, skipped, tryRow, type Table } from './timing.ts';
import { torchBench, torchMissing } from './peers/torch.ts';

const OPTS = { budgetMs: 4000, warmupMs: 0, minWarmup: 1, minSamples: 3 };
const BATCH = 64;

type Kiln = typeof import('../index.ts');
type Tensor = import('../index.ts').Tensor;

function cnnStep(kiln: Kiln) {
  const { nn, F, optim } = kiln;
  kiln.manualSeed(1234);
  class Net extends nn.Module {
    conv1 = new nn.Conv2d(1, 32, 3); conv2 = new nn.Conv2d(32, 64, 3);
    dropout1 = new nn.Dropout(0.25); dropout2 = new nn.Dropout(0.5);
    fc1 = new nn.Linear(9216, 128); fc2 = new nn.Linear(128, 10);
    forward(x: Tensor): Tensor {
      x = F.maxPool2d(F.relu(this.conv2.forward(F.relu(this.conv1.forward(x)))), 2);
      x = F.relu(this.fc1.forward(this.dropout1.forward(x).flatten(1)));
      return F.logSoftmax(this.fc2.forward(this.dropout2.forward(x)), 1);
    }
  }
  const model = new Net();
  const x = kiln.randn([BATCH, 1, 28, 28]);
  const y = kiln.randint(0, 10, [BATCH]);
  const opt = new optim.SGD(model.parameters(), { lr: 0.01 });
  const body = (xb: Tensor, yb: Tensor): Tensor => {
    opt.zeroGrad();
    const loss = F.nllLoss(model.forward(xb), yb);
    loss.backward();
    opt.step();
    return loss;
  };
  return { x, y, body };
}

export async function runCnn(): Promise<Table> {
  const table: Table = {
    id: 'cnn',
    title: `MNIST CNN training step (PyTorch's examples/mnist Net, batch ${BATCH}, nll_loss, SGD lr 0.01; median per step)`,
    unit: 'ms',
    rows: [],
    notes: [],
    baseline: '',
    showFirstValue: true,
  };
  const rows = table.rows;
  const kiln = await import('../index.ts');
  rows.push(await tryRow('kiln compiled (cpu)', async () => {
    const { x, y, body } = cnnStep(kiln);
    const step = kiln.compile(body);
    return rowFrom('kiln compiled (cpu)', await measure(async () => (await step(x, y)).item(), OPTS), 'first call includes trace + compile');
  }));
  rows.push(await tryRow('kiln eager (cpu)', async () => {
    const { x, y, body } = cnnStep(kiln);
    return rowFrom('kiln eager (cpu)', await measure(() => body(x, y).itemSync(), OPTS));
  }));
  const tm = await torchMissing();
  if (tm) rows.push(skipped('PyTorch eager (2 threads)', tm));
  else rows.push(await tryRow('PyTorch eager (2 threads)', async () => {
    const r = await torchBench('cnn', OPTS.budgetMs / 1000);
    return rowFrom('PyTorch eager (2 threads)', r, `torch ${r.torch}, set_num_threads(${r.threads}), ${r.blas}`);
  }));
  table.notes.push("kiln and PyTorch each use their own seeded init and random data (same shapes and recipe); kiln's gemm splits big products over its worker pool (runtime/threads.ts), the rest runs on one thread");
  return finishTable(table, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch eager (2 threads)']);
}
