/**
 * `osteo cv` and `osteo reproduce` stop on SIGTERM as `osteo train` does (Slurm, Kubernetes and
 * `timeout` stop jobs with it): the step in progress finishes, `last` is saved, every lock is
 * released, no half-written checkpoint is left, the exit status is 1, and the same command resumes
 * from `last`. The signal is sent to a `bash -c 'exec …'` wrapper's first process, as the
 * scheduler examples in examples/ run osteo.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { resolveCvConfig, resolveTrainConfig } from '../../src/config/index.js';
import { indexDataset, synthesizePhantom } from '../../src/data/index.js';
import { cvExperimentFromConfig, executeRun, planCv, planRun, runCv } from '../../src/pipeline/index.js';
import { osteoArgv } from '../helpers/cli.js';
import { refusal } from '../helpers/refusal.js';
import { signalWhen } from '../helpers/signals.js';
import { tempDir } from '../helpers/temp.js';

/** `bash -c 'exec "$@"' bash node …osteo args`: bash is the first process, and exec makes osteo that process. */
const execWrapper = (args: readonly string[]) => ['-c', 'exec "$@"', 'bash', process.execPath, ...osteoArgv(args)];

/** What a clean stop leaves in a run folder: `last/` at the step reached, no lock, no checkpoint being written. */
async function assertStoppedCleanly(run: string, stderr: string): Promise<void> {
  const state = JSON.parse(readFileSync(join(run, 'last', 'state.json'), 'utf8')) as { step: number };
  assert.ok(state.step >= 1, `last saved at step ${state.step}`);
  const left = (await readdir(run)).filter((entry) => entry === '.lock' || /\.(tmp|old)-/.test(entry));
  assert.equal(left, [], `${run} keeps ${left.join(', ')}: ${stderr}`);
}

test('osteo cv under a `bash -c exec` wrapper: SIGTERM to its first process finishes the step, saves `last`, releases both locks, exits 1; the same command resumes', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-sigterm-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 8, size: 32, seed: 4 });
    const out = join(dir, 'cv');
    const settings = { model: ['resnet18'], data, out, folds: '2', imageSize: '32', epochs: '2', batchSize: '4', workers: '1', backend: 'wasm', resamples: '50' };
    const args = ['cv', '--model', 'resnet18', '--data', data, '--out', out, '--folds', '2', '--image-size', '32', '--epochs', '2', '--batch-size', '4', '--workers', '1', '--backend', 'wasm', '--resamples', '50', '--set', 'augment=none'];
    const stopped = await signalWhen('bash', execWrapper(args), /epoch 1\/2 step 1\//, 'SIGTERM');
    assert.ok(stopped.sent, `no step was reported: ${stopped.stderr}`);
    assert.equal([stopped.code, stopped.signal], [1, null], `exit ${stopped.code} ${stopped.signal}: ${stopped.stderr}`);
    assert.match(stopped.stderr, /SIGTERM: finishing the current step and saving `last`/);
    assert.match(stopped.stderr, /interrupted in job r1-f1-resnet18; run the same command again to resume it/);
    const job = join(out, 'jobs', 'r1-f1-resnet18');
    await assertStoppedCleanly(join(job, 'run'), stopped.stderr);
    assert.not.ok(existsSync(join(job, '.lock')), "the job's lock is released");
    assert.not.ok(existsSync(join(job, 'result.json')));

    const seen: string[] = [];
    const resumed = await runCv(cvExperimentFromConfig(resolveCvConfig(settings), ['augment=none']), { backend: await useBackend('wasm'), onTrainEvent: (event) => seen.push(event.type) });
    assert.equal(resumed.jobs.map((j) => j.status), ['done', 'done']);
    assert.is(seen.indexOf('resume') >= 0 && seen.indexOf('resume') < seen.indexOf('stop'), true, 'job 1 resumed from its `last`');
  } finally {
    await cleanup();
  }
});

test('osteo reproduce: SIGTERM finishes the step, saves `last`, releases OUT/.lock and the run lock, exits 1 naming what to do', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-sigterm-');
  try {
    const config = join(dir, 'tiny.json');
    const models = [{ model: 'resnet18', pretrained: false }];
    await writeFile(config, JSON.stringify({ data: { source: 'phantom', dir: join(dir, 'phantom'), perClass: 8, size: 32, seed: 3 }, models, set: ['epochs=2', 'imageSize=32', 'batchSize=4', 'augment=none'] }));
    const out = join(dir, 'out');
    const args = ['reproduce', '--config', config, '--out', out, '--protocol', 'clean', '--no-pretrained', '--backend', 'wasm', '--workers', '1'];
    const stopped = await signalWhen('bash', execWrapper(args), /epoch 1\/2 step 1\//, 'SIGTERM');
    assert.ok(stopped.sent, `no step was reported: ${stopped.stderr}`);
    assert.equal([stopped.code, stopped.signal], [1, null], `exit ${stopped.code} ${stopped.signal}: ${stopped.stderr}`);
    assert.match(stopped.stderr, /SIGTERM: finishing the current step and saving `last`/);
    assert.match(stopped.stderr, /interrupted while training resnet18; run the same command again to resume/);
    await assertStoppedCleanly(join(out, 'runs', 'resnet18'), stopped.stderr);
    assert.not.ok(existsSync(join(out, '.lock')), "OUT's lock is released");
  } finally {
    await cleanup();
  }
});

test("--checkpoint-every reaches every job's config but not the plan: shards may save at other intervals and still collect", async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-recovery-plan-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    const { rows } = await indexDataset({ dataDir: data });
    const experiment = (extra: Record<string, unknown>) => cvExperimentFromConfig(resolveCvConfig({ model: ['resnet18'], data, out: join(dir, 'cv'), folds: '2', ...extra }), []);
    const saving = experiment({ checkpointEvery: '10m' });
    assert.equal(saving.overrides, { checkpointEvery: '10m' });
    assert.is((await planCv(saving, rows)).fingerprint, (await planCv(experiment({}), rows)).fingerprint);
  } finally {
    await cleanup();
  }
});

test('a stop request that came between two runs starts no other: the next run is refused before its folder is made', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-stop-between-');
  try {
    const config = await resolveTrainConfig({ flags: { model: 'resnet18', data: join(dir, 'data'), out: join(dir, 'run'), imageSize: '32', backend: 'wasm' } });
    const controller = new AbortController();
    controller.abort();
    await refusal(executeRun(await planRun(config), { backend: await useBackend('wasm'), signal: controller.signal }), /stopped before starting .*run: run the same command again/);
    assert.not.ok(existsSync(join(dir, 'run')));
  } finally {
    await cleanup();
  }
});

test.run();
