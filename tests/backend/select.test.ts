import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { nodeEnvironment, useBackend, type BackendEnvironment } from '../../src/backend/index.js';
import { UserError } from '../../src/util/index.js';

const notFound = (specifier: string) => Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });

/** A machine where only the listed packages import; "tensorflow" packages register a stand-in backend. */
function machine(present: string[], cuda: boolean): BackendEnvironment & { imported: string[] } {
  const imported: string[] = [];
  return {
    imported,
    cudaUnavailableReason: () => (cuda ? null : 'no NVIDIA driver'),
    async importModule(specifier) {
      imported.push(specifier);
      if (!present.includes(specifier)) throw notFound(specifier);
      if (specifier.startsWith('@tensorflow/tfjs-node')) {
        if (tf.findBackendFactory('tensorflow') === null) tf.registerBackend('tensorflow', () => new MathBackendCPU());
        return {};
      }
      return nodeEnvironment.importModule(specifier);
    },
  };
}

test.after.each(() => {
  if (tf.findBackendFactory('tensorflow') !== null) tf.removeBackend('tensorflow');
});

test('auto falls back in order: gpu (no CUDA) → node (missing) → wasm (missing) → cpu', async () => {
  const env = machine(['@tensorflow/tfjs-backend-cpu'], false);
  const selection = await useBackend('auto', env);
  assert.is(selection.candidate, 'cpu');
  assert.is(tf.getBackend(), 'cpu');
  assert.equal(env.imported, ['@tensorflow/tfjs-node', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu']);
  const byName = Object.fromEntries(selection.candidates.map((s) => [s.candidate, s]));
  assert.is(byName['tfjs-node-gpu']!.available, false);
  assert.match(byName['tfjs-node-gpu']!.reason, /no NVIDIA driver/);
  assert.match(byName['tfjs-node']!.reason, /not installed/);
  assert.is(byName['wasm']!.available, false);
  assert.match(selection.reason, /first available after tfjs-node-gpu, tfjs-node, wasm/);
});

test('auto prefers tfjs-node when it is installed, and never tries the later ones', async () => {
  const env = machine(['@tensorflow/tfjs-node', '@tensorflow/tfjs-backend-cpu'], false);
  const selection = await useBackend('auto', env);
  assert.is(selection.candidate, 'tfjs-node');
  assert.is(selection.backend, 'tensorflow');
  assert.is(tf.getBackend(), 'tensorflow');
  assert.is(selection.candidates.find((s) => s.candidate === 'cpu')!.available, null);
  assert.not.ok(env.imported.includes('@tensorflow/tfjs-node-gpu'), 'no CUDA: the gpu package is not even imported');
});

test('auto takes tfjs-node-gpu first where a CUDA GPU is usable', async () => {
  const env = machine(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'], true);
  const selection = await useBackend('auto', env);
  assert.is(selection.candidate, 'tfjs-node-gpu');
});

test('an explicitly requested backend that is missing is a UserError naming the package and the install', async () => {
  const env = machine(['@tensorflow/tfjs-backend-cpu'], false);
  try {
    await useBackend('tensorflow', env);
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.instance(error, UserError);
    const message = (error as Error).message;
    assert.match(message, /backend 'tensorflow' is not available/);
    assert.match(message, /@tensorflow\/tfjs-node: not installed/);
    assert.match(message, /npm install @tensorflow\/tfjs-node@4\.22\.0/);
    assert.match(message, /@tensorflow\/tfjs-node-gpu: skipped: no NVIDIA driver/);
  }
});

test('the real wasm backend initialises from node_modules by path, and cpu is selectable', async () => {
  const wasm = await useBackend('wasm');
  assert.is(wasm.backend, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).arraySync());
  assert.equal(sum, [4, 6]);
  const cpu = await useBackend('cpu');
  assert.is(cpu.backend, 'cpu');
  assert.is(tf.getBackend(), 'cpu');
});

const cli = (args: string[]) => execFileSync(process.execPath, ['dist/cli.js', ...args], { encoding: 'utf8' });

test('osteo --help lists the commands', () => {
  const help = cli(['--help']);
  assert.match(help, /Usage: osteo/);
  assert.match(help, /info/);
});

test('osteo info --json reports the backend and every candidate', () => {
  const info = JSON.parse(cli(['info', '--json'])) as Record<string, unknown>;
  assert.ok(['tensorflow', 'wasm', 'cpu'].includes(info.backend as string));
  assert.is(info.tfjsVersion, '4.22.0');
  assert.type(info.cpuCores, 'number');
  assert.type(info.wasmSimd, 'boolean');
  const candidates = info.candidates as Array<{ candidate: string; available: boolean | null; reason: string }>;
  assert.equal(candidates.map((c) => c.candidate), ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
  for (const c of candidates) if (c.available === false) assert.ok(c.reason.length > 0);
});

test('osteo info --backend with an unknown name exits non-zero and says the choices', () => {
  try {
    cli(['info', '--backend', 'metal']);
    assert.unreachable('should have failed');
  } catch (error) {
    const e = error as { status: number; stderr: string };
    assert.is.not(e.status, 0);
    assert.match(e.stderr, /auto, tensorflow, wasm, cpu/);
  }
});

test.run();
