/**
 * The phantom must be learnable but not trivial: a small CNN trained by PyTorch (an independent
 * learner) on our loader's 64-pixel batches must beat chance (33%) by far, while a one-number
 * feature (mean brightness) must not solve it. One thread and fixed seeds make the run repeatable
 * (it scored 0.74 when written; neighbouring torch seeds give 0.65–0.83).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createLoader, imagenetNormalization, splitDataset, synthesizePhantom, type Split } from '../../src/data/index.js';
import { tempDir } from '../helpers/temp.js';
import { referenceTest, runPython } from '../fixtures/torch/python.js';

const trainScript = String.raw`
import json, sys
import numpy as np, torch, torch.nn as nn
torch.manual_seed(0)
torch.set_num_threads(1)
folder = sys.argv[1]
meta = json.load(open(folder + "/meta.json"))
S = meta["size"]
def load(name):
    x = np.fromfile(folder + "/" + name + ".f32", dtype=np.float32).reshape(-1, S, S, 3)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(meta[name + "_labels"])
xtr, ytr = load("train")
xte, yte = load("test")
net = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 3))
opt = torch.optim.Adam(net.parameters(), 1e-3)
for epoch in range(20):
    net.train()
    order = torch.randperm(len(ytr))
    for i in range(0, len(order), 16):
        b = order[i:i + 16]
        loss = nn.functional.cross_entropy(net(xtr[b]), ytr[b])
        opt.zero_grad(); loss.backward(); opt.step()
net.eval()
with torch.no_grad():
    cnn = (net(xte).argmax(1) == yte).float().mean().item()
mean_tr = xtr.mean((1, 2, 3)); mean_te = xte.mean((1, 2, 3))
centroids = torch.stack([mean_tr[ytr == c].mean() for c in range(3)])
brightness = ((mean_te[:, None] - centroids[None]).abs().argmin(1) == yte).float().mean().item()
print(json.dumps({"cnn": cnn, "brightness": brightness, "train": len(ytr), "test": len(yte)}))
`;

referenceTest(test, 'a small CNN learns the phantom at 64 px well above chance; mean brightness does not', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: dataDir, seed: 42 });
    await splitDataset({ dataDir, val: 0, test: 0.3, seed: 0 });
    const transform = { resize: 73, crop: 64, ...imagenetNormalization };
    const meta: Record<string, unknown> = { size: 64 };
    for (const split of ['train', 'test'] as Split[]) {
      const loader = createLoader({ dataDir, split, imageSize: 64, transform, batchSize: 64, sampler: 'sequential', seed: 0, epoch: 0 });
      const images: Float32Array[] = [];
      const labels: number[] = [];
      for await (const batch of loader) {
        images.push(batch.images);
        labels.push(...batch.labels);
      }
      const all = new Float32Array(images.reduce((n, a) => n + a.length, 0));
      images.reduce((offset, a) => (all.set(a, offset), offset + a.length), 0);
      await writeFile(join(dir.path, `${split}.f32`), all);
      meta[`${split}_labels`] = labels;
    }
    await writeFile(join(dir.path, 'meta.json'), JSON.stringify(meta));
    const result = JSON.parse(runPython({ code: trainScript }, [dir.path])) as { cnn: number; brightness: number; train: number; test: number };
    assert.ok(result.test >= 50, `test images: ${result.test}`);
    assert.ok(result.cnn >= 0.6, `CNN test accuracy ${result.cnn.toFixed(2)} (chance 0.33)`);
    assert.ok(result.brightness <= 0.7, `mean-brightness baseline ${result.brightness.toFixed(2)} should not solve the task`);
  } finally {
    await dir.cleanup();
  }
});

test.run();
