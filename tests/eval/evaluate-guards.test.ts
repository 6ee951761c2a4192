/**
 * What keeps an evaluation honest and its report safe: the run's recorded split, the manifest's
 * content hashes, paths inside the dataset, non-finite outputs, and a report folder that is the
 * evaluation's own, written whole.
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { decodeRgb } from '../../src/data/image.js';
import { classNames } from '../../src/data/index.js';
import { contentHash } from '../../src/data/index.js';
import { writeRunSplit } from '../../src/runs/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { readSafetensors, writeSafetensors } from '../../src/weights/index.js';
import { defaultEvalOutDir, evaluateRuns, evaluationRecordFile, type EvaluateOptions } from '../../src/eval/evaluate.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let data = '';
let runA: RunFixture;
let runB: RunFixture;

/** A dataset whose splits.csv carries the indexer's content hash of every image, as `osteo data split` writes it. */
async function writeHashedDataset(dir: string): Promise<void> {
  const rows = ['path,label,class,split,group,contentHash'];
  for (let i = 0; i < 6; i++) {
    const split = i < 3 ? 'val' : 'test';
    const path = `${classNames[i % 3]}/${split}-${i}.png`;
    await mkdir(join(dir, classNames[i % 3]!), { recursive: true });
    await writeTestImage(join(dir, path), 40 + i, 36, 300 + i);
    rows.push(`${path},${i % 3},c,${split},g${i},${contentHash(await decodeRgb(join(dir, path)))}`);
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-eval-guards-'));
  data = join(root, 'data');
  await writeHashedDataset(data);
  runA = await writeRunFixture(join(root, 'runs', 'alpha'), 'resnet18', { imageSize: 32, seed: 61 });
  runB = await writeRunFixture(join(root, 'runs', 'beta'), 'resnet18', { imageSize: 32, seed: 62 });
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const base = (extra: Partial<EvaluateOptions> = {}): EvaluateOptions => ({ backend, runs: [runA.dir], dataDir: data, outDir: null, resamples: 20, ...extra });

const rejection = async (promise: Promise<unknown>): Promise<Error> =>
  promise.then(
    () => assert.unreachable('should have failed') as never,
    (error: unknown) => error as Error,
  );

test('a run is evaluated on the split it was trained with: a re-split manifest is refused naming both hashes; no record warns', async () => {
  const copy = join(root, 'resplit');
  await cp(data, copy, { recursive: true });
  const run = join(root, 'runs', 'recorded');
  await cp(runA.dir, run, { recursive: true });
  const record = await writeRunSplit(run, copy);
  const warnings: string[] = [];
  await evaluateRuns(base({ runs: [run], dataDir: copy, onWarning: (m) => warnings.push(m) }));
  assert.equal(warnings, [], 'the recorded split matches: nothing to warn about');
  // `osteo data split --seed 7`: same images, other assignment.
  const manifest = await readFile(join(copy, 'splits.csv'), 'utf8');
  await writeFile(join(copy, 'splits.csv'), manifest.replace('Normal/val-0.png,0,c,val', 'Normal/val-0.png,0,c,train'));
  const error = await rejection(evaluateRuns(base({ runs: [run], dataDir: copy })));
  assert.ok(error instanceof UserError);
  assert.ok(error.message.includes(record.manifestSha256), 'names the recorded hash');
  assert.match(error.message, /now has SHA-256 [0-9a-f]{64}: the data was re-split since/);
  assert.match(error.message, /restore that splits\.csv\), or retrain/);
  // Another dataset folder with another manifest (an external test set) is allowed, loudly.
  const external = join(root, 'external');
  await cp(copy, external, { recursive: true });
  await evaluateRuns(base({ runs: [run], dataDir: external, onWarning: (m) => warnings.push(m) }));
  assert.is(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /was trained on .*resplit \(splits\.csv SHA-256 [0-9a-f]{64}\), not on .*external \(SHA-256 [0-9a-f]{64}\)/);
  // Its val split lost its only Normal image to train: no screening thresholds can be chosen on it.
  assert.match(warnings[1]!, /^no screening operating points in this report: the val split of .*external \(resnet18\) has no Normal image/);
  warnings.length = 0;

  await evaluateRuns(base({ onWarning: (m) => warnings.push(m) }));
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /run .*alpha has no split record .*cannot check/);
});

test('an image changed since indexing is refused naming the file; a row outside the dataset is refused', async () => {
  const copy = join(root, 'tampered');
  await cp(data, copy, { recursive: true });
  await writeTestImage(join(copy, 'Osteopenia/test-4.png'), 44, 36, 999);
  const error = await rejection(evaluateRuns(base({ dataDir: copy })));
  assert.ok(error instanceof DataError, String(error));
  assert.is((error as DataError).file, join(copy, 'Osteopenia/test-4.png'));
  assert.match(error.message, /no longer match the content hash/);

  const escaping = join(root, 'escaping');
  await cp(data, escaping, { recursive: true });
  await writeTestImage(join(root, 'outside.png'), 40, 40, 5);
  const manifest = await readFile(join(escaping, 'splits.csv'), 'utf8');
  await writeFile(join(escaping, 'splits.csv'), manifest.replace(/Osteoporosis\/test-5\.png,2,c,test,g5,[0-9a-f]+/, 'Osteoporosis/../../outside.png,2,c,test,g5,'));
  const outside = await rejection(evaluateRuns(base({ dataDir: escaping })));
  assert.ok(outside instanceof DataError, String(outside));
  assert.match(outside.message, /splits\.csv: row 7: path 'Osteoporosis\/\.\.\/\.\.\/outside\.png' is not a file inside the dataset/);
});

test('weights that overflow make eval fail naming the model and its file, not report a NaN accuracy', async () => {
  const broken = join(root, 'runs', 'nan');
  await cp(runA.dir, broken, { recursive: true });
  const file = join(broken, 'best', 'model.safetensors');
  const dict = await readSafetensors(file);
  // Finite weights whose logits overflow to ±Infinity (a non-finite weight is refused when the file is read).
  (dict.get('fc.weight')!.data as Float32Array).fill(3.4028234663852886e38);
  (dict.get('fc.bias')!.data as Float32Array).fill(3.4028234663852886e38);
  await writeSafetensors(file, dict);
  const error = await rejection(evaluateRuns(base({ runs: [runA.dir, broken] })));
  assert.ok(error instanceof DataError, String(error));
  assert.is((error as DataError).file, file);
  assert.match(error.message, /model resnet18:nan of run .*nan gives non-finite outputs/);
});

test('the default report folder names the runs, so two evaluations never share one', async () => {
  const a = await evaluateRuns(base({ outDir: undefined }));
  const b = await evaluateRuns(base({ runs: [runB.dir], outDir: undefined }));
  const both = await evaluateRuns(base({ runs: [runA.dir, runB.dir], outDir: undefined }));
  assert.is(a.written!.dir, join(root, 'runs', 'eval-test-alpha'));
  assert.is(b.written!.dir, join(root, 'runs', 'eval-test-beta'));
  assert.is(both.written!.dir, join(root, 'runs', 'eval-test-alpha+beta'));
  assert.is(defaultEvalOutDir([runA.dir], 'val', 'last'), join(root, 'runs', 'eval-val-alpha-last'));
  const record = JSON.parse(await readFile(join(a.written!.dir, evaluationRecordFile), 'utf8'));
  assert.equal(record.runs, [runA.dir]);
  assert.ok(a.written!.files.includes(evaluationRecordFile));
});

test('another evaluation\'s report, a folder of other files, or a file is never written over', async () => {
  const out = join(root, 'shared-out');
  await evaluateRuns(base({ outDir: out }));
  const before = await readFile(join(out, 'results.csv'), 'utf8');
  const other = await rejection(evaluateRuns(base({ runs: [runB.dir], outDir: out })));
  assert.ok(other instanceof UserError);
  assert.match(other.message, /holds the report of the test split of .*alpha \(best checkpoint\), not of these runs: give another --out/);
  assert.is(await readFile(join(out, 'results.csv'), 'utf8'), before, 'the first report is untouched');

  const foreign = join(root, 'my-files');
  await mkdir(foreign);
  await writeFile(join(foreign, 'thesis.md'), 'mine');
  const refused = await rejection(evaluateRuns(base({ outDir: foreign })));
  assert.match(refused.message, /holds files osteo eval did not write \(thesis\.md\)/);
  assert.equal(await readdir(foreign), ['thesis.md']);

  const file = join(root, 'a-file');
  await writeFile(file, 'x');
  assert.match((await rejection(evaluateRuns(base({ outDir: file })))).message, /is a file, not a folder/);
  const below = await rejection(evaluateRuns(base({ outDir: join(file, 'report') })));
  assert.ok(below instanceof UserError, String(below));
  assert.match(below.message, /a-file is a file, but .*a-file needs it to be a folder/);
});

test('the same evaluation again replaces its report whole: no stale plot survives, no staging folder is left', async () => {
  const out = join(root, 'again');
  await evaluateRuns(base({ runs: [runA.dir, runB.dir], outDir: out }));
  // A plot only an earlier evaluation of these runs wrote (say, with another model list).
  await writeFile(join(out, 'confusion_old_model.png'), 'stale');
  const second = await evaluateRuns(base({ runs: [runA.dir, runB.dir], outDir: out }));
  const entries = await readdir(out);
  assert.not.ok(entries.includes('confusion_old_model.png'));
  assert.equal(entries.sort(), [...second.written!.files].sort());
  assert.equal((await readdir(dirname(out))).filter((e) => e.includes('.again.')), []);

  // kill -9 between the switch's two renames: the report set aside, a staging folder left over.
  const deadPid = 4194305; // above Linux's largest pid_max, so no process has it
  await rename(out, join(dirname(out), `.again.old-${deadPid}-1-1`));
  await mkdir(join(dirname(out), `.again.staging-${deadPid}-1-2`));
  await writeFile(join(dirname(out), `.again.staging-${deadPid}-1-2`, 'results.csv'), 'half');
  const previous = await readFile(join(dirname(out), `.again.old-${deadPid}-1-1`, 'results.csv'), 'utf8');
  // The next evaluation into the folder puts the report back first, so another evaluation cannot take the folder.
  const broken = join(root, 'runs', 'broken');
  await cp(runB.dir, broken, { recursive: true });
  const dict = await readSafetensors(join(broken, 'best', 'model.safetensors'));
  (dict.get('fc.weight')!.data as Float32Array).fill(Number.NaN); // refused when the file is read
  await writeSafetensors(join(broken, 'best', 'model.safetensors'), dict);
  const refused = await rejection(evaluateRuns(base({ runs: [runA.dir, broken], outDir: out })));
  assert.match(refused.message, /holds the report of the test split of .*alpha, .*beta/);
  assert.is(await readFile(join(out, 'results.csv'), 'utf8'), previous, 'the report set aside is back in place');
  assert.equal((await readdir(dirname(out))).filter((e) => e.includes('.again.')), [], 'no leftovers, not even the failed evaluation\'s staging folder');
});

test('--checkpoint last evaluates a run that has only last/; without it the error points to the flag', async () => {
  const early = join(root, 'runs', 'early');
  await cp(runA.dir, early, { recursive: true });
  await rename(join(early, 'best'), join(early, 'last'));
  const error = await rejection(evaluateRuns(base({ runs: [early] })));
  assert.match(error.message, /no best checkpoint .*add --checkpoint last/);
  const last = await evaluateRuns(base({ runs: [early], checkpoint: 'last' }));
  const best = await evaluateRuns(base());
  assert.equal(last.report.models[0]!.probabilities, best.report.models[0]!.probabilities);
});

test.run();
