/** The eval room's commands through the real CLI entry (in-process), as a user types them. */
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain } from '../helpers/cli.js';
import { setupOnce } from './helpers.js';
import { useBackend } from '../../src/backend/index.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

let root = '';
let r18: RunFixture;
let b3: RunFixture;
let image = '';

/** Run the CLI in-process on wasm and capture what it writes. */
const osteo = (...argv: string[]) => captureMain([...argv, '--backend', 'wasm']);

setupOnce(test, async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-cli-'));
  r18 = await writeRunFixture(join(root, 'r18'), 'resnet18', { imageSize: 64, seed: 41 });
  b3 = await writeRunFixture(join(root, 'b3'), 'efficientnet_b3', { imageSize: 64, seed: 42 });
  image = join(root, 'knee.png');
  await writeTestImage(image, 96, 96, 9);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('predict --json prints exactly the documented shape', async () => {
  const { code, stdout } = await osteo('predict', image, '--run', r18.dir, '--run', b3.dir, '--json');
  assert.is(code, 0);
  const json = JSON.parse(stdout);
  assert.equal(Object.keys(json), ['images', 'failed']);
  assert.equal(json.failed, []);
  const [entry] = json.images;
  assert.equal(Object.keys(entry), ['path', 'prediction', 'confidence', 'probabilities', 'models']);
  assert.is(entry.path, image);
  assert.ok(['Normal', 'Osteopenia', 'Osteoporosis'].includes(entry.prediction));
  assert.is(entry.probabilities.length, 3);
  assert.equal(Object.keys(entry.models), ['resnet18', 'efficientnet_b3']);
  assert.equal(Object.keys(entry.models.resnet18), ['prediction', 'confidence', 'probabilities']);
});

test('predict, human output: the diagnosis and the disclaimer; --model/--weights form works too', async () => {
  const { code, stdout } = await osteo('predict', image, '--model', 'resnet18', '--weights', join(r18.dir, 'best', 'model.safetensors'), '--image-size', '64');
  assert.is(code, 0);
  assert.match(stdout, /knee\.png: (Normal|Osteopenia|Osteoporosis) \(confidence/);
  assert.match(stdout, /research tool, not a diagnostic device/);
});

test('predict: a bad input is reported and the rest printed, then exit 1; a size mismatch warns on stderr', async () => {
  const broken = join(root, 'broken.png');
  await writeFile(broken, 'not an image');
  const { code, stdout, stderr } = await osteo('predict', broken, image, '--run', r18.dir, '--image-size', '48');
  assert.is(code, 1);
  assert.match(stdout, /knee\.png: (Normal|Osteopenia|Osteoporosis) \(confidence/);
  assert.match(stdout, /broken\.png: not predicted — cannot decode image/);
  assert.match(stderr, /osteo: warning: run .*r18 was trained at 64px but --image-size 48 was given/);
  assert.match(stderr, /osteo: 1 of 2 inputs could not be predicted: .*broken\.png/);
  assert.not.match(stderr, /internal error/);
  const json = await osteo('predict', broken, image, '--run', r18.dir, '--json');
  assert.is(json.code, 1);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.images.map((i: { path: string }) => i.path), [image]);
  assert.equal(parsed.failed.map((f: { path: string }) => f.path), [broken]);
});

test('bad invocations exit 1 with a message that says what to do', async () => {
  let result = await osteo('predict', image);
  assert.is(result.code, 1);
  assert.match(result.stderr, /give --run DIR/);
  result = await osteo('export', '--dashboard', join(root, 'dash'), '--resnet18', r18.dir);
  assert.is(result.code, 1);
  assert.match(result.stderr, /--dashboard needs --resnet50, --efficientnet-b3 RUN/);
  result = await osteo('predict', image, '--run', join(root, 'nope'));
  assert.is(result.code, 1);
  assert.match(result.stderr, /not a training run/);
});

test('eval --json and export --format tfjs through the CLI', async () => {
  const data = join(root, 'data');
  for (const name of ['Normal', 'Osteopenia', 'Osteoporosis']) await mkdir(join(data, name), { recursive: true });
  const rows = ['path,label,split,group'];
  for (let i = 0; i < 6; i++) {
    const path = `${['Normal', 'Osteopenia', 'Osteoporosis'][i % 3]}/${i}.png`;
    await writeTestImage(join(data, path), 80, 80, 60 + i);
    rows.push(`${path},${i % 3},${i < 3 ? 'val' : 'test'},g${i}`);
  }
  await writeFile(join(data, 'splits.csv'), rows.join('\n') + '\n');
  const out = join(root, 'eval');
  const evaluated = await osteo('eval', '--run', r18.dir, b3.dir, '--data', data, '--out', out, '--weights', 'auto', '--resamples', '100', '--json');
  assert.is(evaluated.code, 0, evaluated.stderr);
  const summary = JSON.parse(evaluated.stdout);
  assert.is(summary.images, 3);
  assert.equal(
    summary.models.map((m: { name: string }) => m.name),
    ['resnet18', 'efficientnet_b3', 'ensemble (soft vote)'],
  );
  assert.is(summary.ensembleWeights.mode, 'auto');
  assert.ok((await readdir(out)).includes('results.md'));

  const exported = await osteo('export', '--run', r18.dir, '--format', 'tfjs', '--out', join(root, 'web'));
  assert.is(exported.code, 0, exported.stderr);
  assert.ok((await readdir(join(root, 'web'))).includes('model.json'));
});

test('--checkpoint last through the CLI, for predict and eval (on the data the previous test wrote); a bad value is refused', async () => {
  const early = join(root, 'early');
  await cp(r18.dir, early, { recursive: true });
  await rename(join(early, 'best'), join(early, 'last'));
  const refused = await osteo('predict', image, '--run', early);
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /add --checkpoint last/);
  assert.is((await osteo('predict', image, '--run', early, '--checkpoint', 'last')).code, 0);
  assert.is.not((await osteo('predict', image, '--run', early, '--checkpoint', 'first')).code, 0);
  const data = join(root, 'data');
  const evaluated = await osteo('eval', '--run', early, '--data', data, '--checkpoint', 'last', '--resamples', '20', '--json');
  assert.is(evaluated.code, 0, evaluated.stderr);
  assert.is(JSON.parse(evaluated.stdout).out, join(root, 'eval-test-early-last'));
});

test('reproduce --check refuses a negative tolerance before any work, naming the flag', async () => {
  const { code, stderr } = await osteo('reproduce', '--check', '-1', '--out', join(root, 'never-written'));
  assert.is(code, 1, stderr);
  assert.match(stderr, /--check must be ≥ 0, got '-1'/);
  assert.not.ok(existsSync(join(root, 'never-written')));
});

test.run();
