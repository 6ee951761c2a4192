/**
 * What keeps an evaluation honest and its report safe: the run's recorded split, the manifest's
 * content hashes, paths inside the dataset, non-finite outputs, and a report folder that is the
 * evaluation's own, written whole.
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { captureMain } from '../helpers/cli.js';
import { reportSummaryJson } from '../../src/report/index.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { writeRunSplit } from '../../src/runs/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { readSafetensors, writeSafetensors } from '../../src/weights/index.js';
import { defaultEvalOutDir, evaluateRuns, evaluationRecordFile, type EvaluateOptions } from '../../src/eval/evaluate.js';
import { writeHashedDataset, writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let data = '';
let runA: RunFixture;
let runB: RunFixture;

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-eval-guards-'));
  data = join(root, 'data');
  await writeHashedDataset(data, ['val', 'val', 'val', 'test', 'test', 'test']);
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

test('a run whose record does not say which images it trained on: a re-split manifest is refused naming both hashes; another dataset and no record warn', async () => {
  const copy = join(root, 'resplit');
  await cp(data, copy, { recursive: true });
  const run = join(root, 'runs', 'recorded');
  await cp(runA.dir, run, { recursive: true });
  const record = { ...(await writeRunSplit(run, copy)), trainContentHashes: undefined };
  await writeFile(join(run, 'split.json'), JSON.stringify(record));
  const warnings: string[] = [];
  await evaluateRuns(base({ runs: [run], dataDir: copy, onWarning: (m) => warnings.push(m) }));
  assert.equal(warnings, [], 'the recorded split matches: nothing to warn about');
  // `osteo data split --seed 7`: same images, other assignment.
  const manifest = await readFile(join(copy, 'splits.csv'), 'utf8');
  await writeFile(join(copy, 'splits.csv'), manifest.replace('Normal/val-0.png,0,c,val', 'Normal/val-0.png,0,c,train'));
  const error = await rejection(evaluateRuns(base({ runs: [run], dataDir: copy })));
  assert.ok(error instanceof UserError);
  assert.ok(error.message.includes(record.manifestSha256), 'names the recorded hash');
  assert.match(error.message, /now has SHA-256 [0-9a-f]{64}: the data was re-split since, and the run's record does not say which images it trained on/);
  assert.match(error.message, /restore that splits\.csv\), retrain the run on the current split, or pass --allow-train-overlap/);
  const allowed = await evaluateRuns(base({ runs: [run], dataDir: copy, allowTrainOverlap: true, onWarning: (m) => warnings.push(m) }));
  assert.equal(allowed.report.trainOverlap?.images, null, 'not known, so not counted');
  assert.match(warnings[0]!, /resplit\/splits\.csv now has SHA-256 [0-9a-f]{64} \(re-split since\), and its record does not say which images it trained on: evaluated as asked/);
  warnings.length = 0;
  // Another dataset folder with another manifest (an external test set) is allowed, loudly.
  const external = join(root, 'external');
  await cp(copy, external, { recursive: true });
  await evaluateRuns(base({ runs: [run], dataDir: external, onWarning: (m) => warnings.push(m) }));
  assert.is(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /was trained with a splits\.csv of SHA-256 [0-9a-f]{64} in .*resplit, not .*external\/splits\.csv \(SHA-256 [0-9a-f]{64}\), and its record does not say which images it trained on/);
  // Its val split lost its only Normal image to train: no screening thresholds can be chosen on it.
  assert.match(warnings[1]!, /^no screening operating points in this report: the val split of .*external \(resnet18\) has no Normal image/);
  warnings.length = 0;

  const unrecorded = await evaluateRuns(base({ onWarning: (m) => warnings.push(m) }));
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /run .*alpha has no split record .*cannot check/);
  assert.equal(unrecorded.report.trainOverlap, { images: null, of: 3, runs: [{ run: runA.dir, images: null, unknown: 'no split.json' }], allowed: false });
});

test('a re-split copy of the dataset: the test images that are training images are counted exactly by content hash and refused; --allow-train-overlap reports the count', async () => {
  // Seven training films, one val, one test: the run's own split shares nothing.
  const trained = join(root, 'trained');
  await writeHashedDataset(trained, ['train', 'train', 'train', 'train', 'train', 'train', 'train', 'val', 'test'], 500);
  const run = join(root, 'runs', 'leaky');
  await cp(runA.dir, run, { recursive: true });
  await writeRunSplit(run, trained);
  const own = await evaluateRuns(base({ runs: [run], dataDir: trained }));
  assert.equal(own.report.trainOverlap, { images: 0, of: 1, runs: [{ run, images: 0 }], allowed: false });

  // A copy whose new split sends six of the training films, renamed, to test beside the test film.
  const copy = join(root, 'resplit-copy');
  await cp(trained, copy, { recursive: true });
  const rows = (await readFile(join(copy, 'splits.csv'), 'utf8')).trim().split('\n');
  const resplit = rows.map((line, i) => {
    if (i === 0 || i > 6) return line;
    const [path, label, name, , group, hash] = line.split(',');
    const moved = path!.replace('/train-', '/copy-');
    renameSync(join(copy, path!), join(copy, moved));
    return [moved, label, name, 'test', group, hash].join(',');
  });
  await writeFile(join(copy, 'splits.csv'), resplit.join('\n') + '\n');
  const refused = await rejection(evaluateRuns(base({ runs: [run], dataDir: copy })));
  assert.ok(refused instanceof UserError, String(refused));
  assert.match(refused.message, /^6 of the 7 test images of .*resplit-copy are training images of the runs \(6 of run .*leaky; the same decoded pixels/);
  assert.match(refused.message, /or pass --allow-train-overlap to evaluate anyway/);

  const warnings: string[] = [];
  const out = join(root, 'leaky-report');
  const { report, written } = await evaluateRuns(base({ runs: [run], dataDir: copy, outDir: out, allowTrainOverlap: true, onWarning: (m) => warnings.push(m) }));
  const expected = { images: 6, of: 7, runs: [{ run, images: 6 }], allowed: true };
  assert.equal(report.trainOverlap, expected);
  assert.match(warnings.join('\n'), /6 of the 7 test images .* evaluated as asked \(--allow-train-overlap\)/);
  assert.match(await readFile(join(written!.dir, 'results.md'), 'utf8'), /Training images among the evaluated: 6 of 7 are training images \(6 of .*leaky\)/);
  const record = JSON.parse(await readFile(join(out, evaluationRecordFile), 'utf8'));
  assert.equal(record.trainOverlap, expected);
  assert.equal(record.weightsSha256, [createHash('sha256').update(await readFile(join(run, 'best', 'model.safetensors'))).digest('hex')]);
  assert.equal((reportSummaryJson(report) as { trainOverlap: unknown }).trainOverlap, expected);
  // The flag, from the command line to --json.
  const cli = await captureMain(['eval', '--run', run, '--data', copy, '--out', join(root, 'leaky-cli'), '--resamples', '20', '--backend', 'wasm', '--json', '--allow-train-overlap']);
  assert.is(cli.code, 0, cli.stderr);
  assert.equal(JSON.parse(cli.stdout).trainOverlap, expected);
  const without = await captureMain(['eval', '--run', run, '--data', copy, '--out', join(root, 'leaky-cli-refused'), '--backend', 'wasm', '--json']);
  assert.is(without.code, 1);
  assert.match(without.stderr, /6 of the 7 test images/);
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
