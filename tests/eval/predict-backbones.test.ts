/**
 * `osteo predict IMAGE --model M --weights torchvision.pth --image-size 224 --json` for every registered
 * model the dashboard export test does not cover (those without a dashboard file): a .pth written by
 * torchvision (random weights, calibrated BatchNorm statistics, from tests/fixtures/torch/reference.py)
 * must give PyTorch's probabilities to ≤ 1e-4 through the real CLI entry. The image is already the
 * model's resize size (256, or 236 for ConvNeXt), so both sides only centre-crop it, and the comparison
 * is of the networks and the crop/normalisation, not of two resamplers.
 */
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain } from '../helpers/cli.js';
import { useBackend } from '../../src/backend/index.js';
import { dashboardFileOf } from '../../src/eval/index.js';
import { listModels, transformAt } from '../../src/models/index.js';
import { fixtureDir, once, referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';
import { writeTestImage } from './fixtures.js';

const crop = 224;
const tolerance = 1e-4;
const models = listModels().filter((entry) => dashboardFileOf(entry.name) === undefined);
const dir = temporaryDirectory('predict-backbones');

/** Run the CLI in-process on wasm, capturing what it prints. */
const osteo = (...argv: string[]) => captureMain([...argv, '--backend', 'wasm']);

const pythonProbabilities = `
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from PIL import Image
from torchvision import transforms
from reference import dashboard_model
torch.set_num_threads(1)
mode, arch, weights, image, resize, crop = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
model = dashboard_model(arch)
model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
model.eval()
pipeline = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(),
    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
x = pipeline(Image.open(image).convert("RGB")).unsqueeze(0)
with torch.no_grad():
    logits = model(x)[0]
    if mode == "scale":
        # Statistics calibrated on noise leave a real image's logits in the hundreds (softmax one-hot):
        # scale the last Linear so this image's logits spread by ~1 and the probabilities say something.
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.div_(logits.std())
        last.bias.div_(logits.std())
        torch.save(model.state_dict(), sys.argv[8])
    else:
        print(json.dumps(torch.softmax(logits, dim=0).tolist()))
`;

const torchvisionFiles = once(() => {
  runPython('reference.py', ['export', dir.path, ...models.map((m) => m.name), '--sizes', '64']);
  return dir.path;
});

test.before.each(async () => {
  await useBackend('wasm');
});

test.after(() => dir.remove());

for (const entry of models) {
  referenceTest(test, `${entry.name}: predict --weights torchvision.pth --image-size ${crop} --json gives PyTorch's probabilities`, async () => {
    const files = torchvisionFiles();
    const resize = transformAt(entry.weights[0].evalTransform, crop).resize;
    const image = join(files, `${entry.name}_knee${resize}.png`);
    await writeTestImage(image, resize, resize, 3);
    const weights = join(files, `${entry.name}_scaled.pth`);
    const python = (mode: string, source: string, ...rest: string[]) =>
      runPython({ code: pythonProbabilities }, [fixtureDir, mode, entry.name, source, image, String(resize), String(crop), ...rest]);
    python('scale', join(files, `${entry.name}.pth`), weights);
    const { code, stdout } = await osteo('predict', image, '--model', entry.name, '--weights', weights, '--image-size', String(crop), '--json');
    assert.is(code, 0);
    const ours = (JSON.parse(stdout) as { images: { probabilities: number[] }[] }).images[0]!.probabilities;
    const theirs = JSON.parse(python('probabilities', weights)) as number[];
    const diff = Math.max(...ours.map((p, c) => Math.abs(p - theirs[c]!)));
    assert.ok(diff <= tolerance, `${entry.name}: osteo ${ours} vs PyTorch ${theirs} (max |Δp| ${diff})`);
    assert.ok(Math.max(...theirs) < 0.99, `${entry.name}: probabilities are not saturated (${theirs}), so the comparison means something`);
  });
}

test.run();
