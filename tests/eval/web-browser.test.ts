/**
 * The web export in a real browser: Debian's headless Chromium (puppeteer-core, no browser download)
 * opens the exported page over 127.0.0.1 with `?image=`, and the probabilities the page writes into
 * #result match `osteo predict --run … --json` (predictImages, what that command prints) to 1e-3, for
 * a phantom-trained run and for a two-run ensemble; the page logs no console error; a screenshot is
 * saved under reports/test-artifacts/. Skipped with the reason where Chromium is missing.
 */
import { copyFile, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { synthesizePhantom, splitDataset } from '../../src/data/index.js';
import { gradCam } from '../../src/eval/gradcam.js';
import { disposeModels, loadRunForInference } from '../../src/eval/inference.js';
import { predictImages, type ImagePrediction } from '../../src/eval/predict.js';
import { preprocessForModel } from '../../src/data/index.js';
import { getModel } from '../../src/models/index.js';
import { argmaxRows } from '../../src/report/index.js';
import { serveDirectory } from '../../src/eval/web-serve.js';
import { exportWeb } from '../../src/eval/web-export.js';
import { trainModel } from '../../src/train/index.js';
import { checkpointWeightsSha256, writeRunCalibration } from '../../src/runs/index.js';
import { chromiumPath, chromiumRequirement } from '../helpers/chromium.js';
import { testWith } from '../helpers/requirements.js';
import { memo, tinyConfig } from '../train/helpers.js';
import { writeRunFixture, writeTestImage } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

const artifacts = resolve('reports', 'test-artifacts');
let root = '';

/** A ResNet18 trained for two steps on a small phantom at 32 px, a B3 fixture run, and a probe image that needs a real resize. */
const fixtures = memo(async () => {
  const started = Date.now();
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-web-browser-'));
  const dataDir = join(root, 'phantom');
  await synthesizePhantom({ dest: dataDir, perClass: 12, size: 48, seed: 3 });
  await splitDataset({ dataDir, val: 0.25, test: 0.1 });
  const trained = join(root, 'resnet18-phantom');
  await trainModel(await tinyConfig(dataDir, trained, { epochs: '1', maxSteps: '2' }), { backend });
  // 64 px, so its Grad-CAM grid is 2×2 rather than a single cell.
  const b3 = await writeRunFixture(join(root, 'b3'), 'efficientnet_b3', { imageSize: 64, seed: 31 });
  const probe = join(root, 'probe.png');
  await writeTestImage(probe, 61, 53, 6);
  console.log(`fixtures (phantom, 2 training steps, B3 run) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { trained, b3: b3.dir, probe };
});

const browsers: Browser[] = [];
/** `--disable-3d-apis` takes WebGL and WebGPU away, so the page's wasm fallback is tested wherever a GPU path exists. */
async function launch(options: { noGpuApis?: boolean } = {}): Promise<Browser> {
  const browser = await puppeteer.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', ...(options.noGpuApis ? ['--disable-3d-apis'] : [])] });
  browsers.push(browser);
  return browser;
}

test.after(async () => {
  for (const browser of browsers) await browser.close();
  if (root) await rm(root, { recursive: true, force: true });
});

interface PageResult {
  backend: string;
  probabilities: number[];
  models: Record<string, { probabilities: number[] }>;
  gradcam: Record<string, { layer?: string; unavailable?: string; grid?: number[]; map?: number[] }>;
  error?: string;
  calibration?: Record<string, number>;
}

/** Export `runs`, serve the site, open it with ?image=, return #result, the console errors and the reference prediction. */
async function openExport(name: string, runs: string[], options: { noGpuApis?: boolean } = {}): Promise<{ page: PageResult; errors: string[]; expected: ImagePrediction; text: string }> {
  const { probe } = await fixtures();
  const site = join(root, name);
  await exportWeb({ backend, runs, outDir: site });
  await copyFile(probe, join(site, 'probe.png'));
  const served = await serveDirectory(site, { port: 0 });
  const started = Date.now();
  const tab = await (await launch(options)).newPage();
  const errors: string[] = [];
  tab.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  tab.on('pageerror', (error) => errors.push(String(error)));
  tab.on('requestfailed', (request) => errors.push(`request failed: ${request.url()}`));
  try {
    await tab.setViewport({ width: 1000, height: 900 });
    await tab.goto(`${served.url}index.html?image=probe.png`);
    await tab.waitForSelector('#result[data-status]', { timeout: 180_000 });
    console.log(`${name}: page classified in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const page = JSON.parse((await tab.$eval('#result', (element) => element.textContent)) ?? 'null') as PageResult;
    const text = (await tab.$eval('body', (element) => (element as HTMLElement).innerText)) ?? '';
    await mkdir(artifacts, { recursive: true });
    const shot = join(artifacts, `web-viewer-${name}.png`);
    await tab.screenshot({ path: shot as `${string}.png`, fullPage: true });
    const png = await readFile(shot);
    assert.ok(png.subarray(1, 4).toString() === 'PNG' && png.length > 10_000, `screenshot ${shot}`);
    const expected = (await predictImages({ backend, images: [probe], runs })).images[0]!;
    return { page, errors, expected, text };
  } finally {
    await tab.close();
    await served.close();
  }
}

function maxDifference(a: number[], b: number[]): number {
  assert.is(a.length, b.length);
  return Math.max(...a.map((p, c) => Math.abs(p - b[c]!)));
}

function checkAgainstPredict(name: string, page: PageResult, expected: ImagePrediction, errors: string[]): void {
  assert.is(page.error, undefined, `the page failed: ${page.error}`);
  assert.equal(errors, [], 'no console errors');
  assert.ok(['webgpu', 'webgl', 'wasm'].includes(page.backend), page.backend);
  assert.equal(Object.keys(page.models), Object.keys(expected.models));
  const lines = [`${name} on ${page.backend}: ensemble max |Δp| ${maxDifference(page.probabilities, expected.probabilities).toExponential(2)}`];
  assert.ok(maxDifference(page.probabilities, expected.probabilities) <= 1e-3, `${name}: page ${page.probabilities} vs predict ${expected.probabilities}`);
  for (const [model, result] of Object.entries(expected.models)) {
    const diff = maxDifference(page.models[model]!.probabilities, result.probabilities);
    lines.push(`  ${model}: max |Δp| ${diff.toExponential(2)}`);
    assert.ok(diff <= 1e-3, `${name}/${model}: page ${page.models[model]!.probabilities} vs predict ${result.probabilities}`);
    assert.ok(Math.max(...result.probabilities) < 0.999, `${model}: probabilities are not saturated, so the comparison means something`);
    assert.ok(page.gradcam[model]?.layer !== undefined, `${model}: Grad-CAM computed in the page (${page.gradcam[model]?.unavailable})`);
  }
  console.log(lines.join('\n'));
}

testWith(chromiumRequirement, test, 'a phantom-trained run: the page’s probabilities match osteo predict to 1e-3, no console errors', async () => {
  const { trained } = await fixtures();
  const { page, errors, expected } = await openExport('single', [trained]);
  checkAgainstPredict('single run', page, expected, errors);
});

/** The page's Grad-CAM grid for each run against src/eval/gradcam.ts on the same input, for the ensemble's top class. */
async function checkGradCam(page: PageResult, expected: ImagePrediction, runs: string[]): Promise<void> {
  const { probe } = await fixtures();
  const classIndex = argmaxRows(expected.probabilities, expected.probabilities.length)[0]!;
  const models = [];
  try {
    for (const run of runs) models.push(await loadRunForInference(run, { backend }));
    for (const [i, m] of models.entries()) {
      const name = Object.keys(expected.models)[i]!;
      const reference = await gradCam(m.engine, getModel(m.modelName).gradCamLayer, await preprocessForModel(probe, m.transform), classIndex);
      const ours = page.gradcam[name]!;
      assert.equal(ours.grid, [reference.height, reference.width], `${name}: Grad-CAM grid`);
      const diff = Math.max(...Array.from(reference.map, (v, k) => Math.abs(v - ours.map![k]!)));
      console.log(`  ${name}: Grad-CAM ${reference.height}×${reference.width}, max |Δ| ${diff.toExponential(2)} (osteo: ${Array.from(reference.map, (v) => v.toFixed(3)).join(' ')})`);
      assert.ok(diff <= 1e-3, `${name}: page ${ours.map} vs osteo ${Array.from(reference.map)}`);
    }
  } finally {
    await disposeModels(models);
  }
}

testWith(chromiumRequirement, test, 'a two-run ensemble (ResNet18 + EfficientNet-B3, different preprocessing) on the wasm fallback matches osteo predict to 1e-3, its Grad-CAM osteo’s', async () => {
  const { trained, b3 } = await fixtures();
  const { page, errors, expected } = await openExport('ensemble', [trained, b3], { noGpuApis: true });
  assert.is(page.backend, 'wasm', 'without WebGL and WebGPU the page falls back to wasm');
  checkAgainstPredict('ensemble', page, expected, errors);
  await checkGradCam(page, expected, [trained, b3]);
});

testWith(chromiumRequirement, test, 'a calibrated run: the page shows softmax(logits / T), matches calibrated osteo predict to 1e-3, and says "calibrated (T = …)"', async () => {
  const { trained } = await fixtures();
  // A copy of the trained run with a temperature of its own weights: the shared fixture stays uncalibrated.
  const run = join(root, 'resnet18-calibrated');
  await cp(trained, run, { recursive: true });
  const record = {
    format: 'osteo-calibration' as const,
    version: 1 as const,
    method: 'temperature' as const,
    temperature: 0.2,
    checkpoint: 'best' as const,
    weightsSha256: await checkpointWeightsSha256(run, 'best'),
    fittedOn: { split: 'val' as const, data: root, manifestSha256: '0'.repeat(64), images: 10, tta: false },
    nllBefore: 1.2,
    nllAfter: 1.1,
  };
  await writeRunCalibration(run, record);
  const { page, errors, expected, text } = await openExport('calibrated', [run]);
  assert.equal(page.calibration, { resnet18: 0.2 }, 'the page applied T');
  const uncalibrated = (await predictImages({ backend, images: [(await fixtures()).probe], runs: [trained] })).images[0]!;
  const change = maxDifference(expected.probabilities, uncalibrated.probabilities);
  console.log(`  T = 0.2 moves predict's probabilities by up to ${change.toExponential(2)}`);
  assert.ok(change > 5e-3, 'T = 0.2 moves the probabilities well beyond the 1e-3 tolerance, so the comparison tells calibrated from not');
  checkAgainstPredict('calibrated run', page, expected, errors);
  assert.match(text, /calibrated \(T = 0\.200\)/, 'the page says the probabilities are calibrated, with T');
});

test.run();
