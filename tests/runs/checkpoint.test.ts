/**
 * Checkpoint directories under failure: a save that dies at any point between its writes leaves
 * either the previous checkpoint or the new one, complete, once the run is recovered.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadCheckpoint, recoverCheckpoints, saveCheckpoint, type CheckpointPoint } from '../../src/runs/index.js';
import type { StateDict } from '../../src/weights/index.js';
import { DataError } from '../../src/util/index.js';

let run: string;
test.before.each(async () => {
  run = await mkdtemp(join(tmpdir(), 'osteo-ckpt-'));
});
test.after.each(async () => {
  await rm(run, { recursive: true, force: true });
});

function dict(value: number): StateDict {
  return new Map([
    ['fc.weight', { dtype: 'float32', shape: [2, 3], data: new Float32Array(6).fill(value) }],
    ['bn.num_batches_tracked', { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(value)) }],
  ]);
}

const contents = (value: number) => ({ weights: dict(value), optimizer: dict(value * 10), state: { epoch: value } });

async function read(name: 'last' | 'best') {
  const checkpoint = await loadCheckpoint(run, name);
  return {
    weight: (checkpoint.weights.get('fc.weight')!.data as Float32Array)[0],
    optimizer: (checkpoint.optimizer?.get('fc.weight')!.data as Float32Array | undefined)?.[0],
    state: checkpoint.state,
  };
}

test('a save replaces the checkpoint whole; nothing temporary is left', async () => {
  await saveCheckpoint(run, 'last', contents(1));
  await saveCheckpoint(run, 'last', contents(2));
  assert.equal(await read('last'), { weight: 2, optimizer: 20, state: { epoch: 2 } });
  assert.equal((await readdir(run)).sort(), ['last']);
  assert.equal((await readdir(join(run, 'last'))).sort(), ['model.safetensors', 'optimizer.safetensors', 'state.json']);
});

const points: CheckpointPoint[] = ['model', 'optimizer', 'state', 'switch', 'between-renames', 'cleanup'];

for (const point of points) {
  test(`killed at '${point}': after recovery the checkpoint is the ${point === 'cleanup' ? 'new' : 'previous'} one, complete`, async () => {
    await saveCheckpoint(run, 'last', contents(1));
    let thrown: unknown;
    try {
      await saveCheckpoint(run, 'last', contents(2), (name, at) => {
        if (name === 'last' && at === point) throw new Error(`simulated kill at ${at}`);
      });
    } catch (error) {
      thrown = error;
    }
    assert.match(String(thrown), new RegExp(`simulated kill at ${point}`));
    if (point === 'between-renames') assert.not.ok(existsSync(join(run, 'last')), 'the kill landed in the moment with no last/');
    const actions = await recoverCheckpoints(run);
    if (point === 'between-renames') assert.ok(actions.some((a) => a.startsWith('restored last/')), actions.join('; '));
    const expected = point === 'cleanup' ? 2 : 1;
    assert.equal(await read('last'), { weight: expected, optimizer: expected * 10, state: { epoch: expected } });
    assert.equal(await readdir(run), ['last'], 'temporaries and set-aside copies are gone');
  });
}

test('a real kill leaves a half-written temporary directory: recovery deletes it and keeps the checkpoint', async () => {
  await saveCheckpoint(run, 'best', { weights: dict(3), state: { epoch: 3 } });
  const orphan = join(run, 'best.tmp-999-1-1');
  await mkdir(orphan);
  await writeFile(join(orphan, 'model.safetensors'), Buffer.alloc(10));
  const actions = await recoverCheckpoints(run);
  assert.ok(actions.some((a) => a.includes('best.tmp-999-1-1')));
  assert.equal(await readdir(run), ['best']);
  assert.is((await read('best')).weight, 3);
  assert.is((await read('best')).optimizer, undefined, 'best holds no optimizer state');
});

test('a missing checkpoint is a UserError naming the file', async () => {
  try {
    await loadCheckpoint(run, 'last');
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /no last checkpoint .*state\.json is missing/);
  }
});

test('a checkpoint with a non-finite weight or optimizer value is refused on loading, naming the file and key', async () => {
  const filled = (value: number): StateDict => new Map([['fc.weight', { dtype: 'float32', shape: [2], data: Float32Array.of(value, 1) }]]);
  await saveCheckpoint(run, 'last', { weights: dict(1), optimizer: filled(Infinity), state: { epoch: 1 } });
  try {
    await loadCheckpoint(run, 'last');
    assert.unreachable('loaded an infinite optimizer moment');
  } catch (error) {
    assert.instance(error, DataError);
    assert.is((error as DataError).file, join(run, 'last', 'optimizer.safetensors'));
    assert.match((error as Error).message, /fc\.weight: element 0 is Infinity/);
  }
  await saveCheckpoint(run, 'best', { weights: filled(NaN), state: { epoch: 1 } });
  try {
    await loadCheckpoint(run, 'best');
    assert.unreachable('loaded NaN weights');
  } catch (error) {
    assert.is((error as DataError).file, join(run, 'best', 'model.safetensors'));
  }
});

test.run();
