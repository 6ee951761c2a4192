import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { osteoArgv } from '../helpers/cli.js';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  activateBackend,
  backendCandidates,
  backendFromEnvironment,
  candidateTrains,
  nodeEnvironment,
  useBackend,
  workerThreadBackends,
  type BackendCandidate,
  type BackendEnvironment,
} from '../../src/backend/index.js';
import { DeviceFault, describeWebgpuFault, summarizeAdapter, type AdapterProbe } from '../../src/backend/webgpu.js';
import { UserError } from '../../src/util/index.js';

const notFound = (specifier: string) => Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });

/** A machine where only the listed packages import; "tensorflow" packages register a stand-in backend. */
function machine(present: string[], cuda: boolean, adapter?: AdapterProbe): BackendEnvironment & { imported: string[] } {
  const imported: string[] = [];
  return {
    imported,
    cudaUnavailableReason: () => (cuda ? null : 'no NVIDIA driver'),
    webgpuAdapter: () => (present.includes('webgpu') ? adapter : undefined),
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
  for (const name of ['tensorflow', 'dummy']) if (tf.findBackendFactory(name) !== null) tf.removeBackend(name);
});

test('auto falls back in order: gpu (no CUDA) → webgpu (missing) → node (missing) → wasm (missing) → cpu', async () => {
  const env = machine(['@tensorflow/tfjs-backend-cpu'], false);
  const selection = await useBackend('auto', 'train', env);
  assert.is(selection.candidate, 'cpu');
  assert.is(tf.getBackend(), 'cpu');
  assert.equal(env.imported, ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu']);
  const byName = Object.fromEntries(selection.candidates.map((s) => [s.candidate, s]));
  assert.is(byName['tfjs-node-gpu']!.available, false);
  assert.match(byName['tfjs-node-gpu']!.reason, /no NVIDIA driver/);
  assert.match(byName['webgpu']!.reason, /not installed \(an optional dependency: npm skips it where Dawn has no prebuilt binary\)/);
  assert.match(byName['tfjs-node']!.reason, /not installed/);
  assert.is(byName['wasm']!.available, false);
  assert.match(selection.reason, /first available after tfjs-node-gpu, webgpu, tfjs-node, wasm/);
});

const lavapipe = summarizeAdapter(
  { vendor: 'mesa', architecture: 'llvmpipe-llvm-15-0-6-256-bits-', device: '0.0.1', description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)' },
  { maxBufferSize: 4294967295, maxStorageBufferBindingSize: 134217728 },
);

test('auto looks at the WebGPU adapter before loading Dawn: a software adapter or none is skipped with the reason, and Dawn is never imported', async () => {
  for (const [probe, reason] of [
    [{ summary: lavapipe }, /skipped: the only adapter is a software one \(llvmpipe: Mesa 25\.0\.7 \(LLVM 15\.0\.6\)\), slower than wasm; --backend webgpu uses it anyway/],
    [{ reason: 'no WebGPU adapter: Dawn found no usable Vulkan device' }, /no WebGPU adapter/],
    [{ reason: 'the adapter probe was killed by SIGSEGV (a broken Vulkan/Metal driver?)' }, /SIGSEGV/],
  ] as const) {
    const env = machine(['webgpu', '@tensorflow/tfjs-backend-wasm'], false, probe);
    const selection = await useBackend('auto', 'train', env);
    assert.is(selection.candidate, 'wasm');
    assert.not.ok(env.imported.includes('webgpu'), 'Dawn not loaded in this process');
    const webgpu = selection.candidates.find((s) => s.candidate === 'webgpu')!;
    assert.is(webgpu.available, false);
    assert.match(webgpu.reason, reason);
  }
});

test('adapters are judged by what their drivers report: lavapipe, SwiftShader and fallback adapters are software, a GPU is hardware', () => {
  assert.ok(lavapipe.software);
  assert.is(lavapipe.maxStorageBufferBindingSize, 134217728);
  const swiftshader = summarizeAdapter({ vendor: 'google', architecture: '', device: 'swiftshader', description: 'SwiftShader Device (Subzero)' }, {});
  assert.ok(swiftshader.software);
  assert.ok(summarizeAdapter({ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' }, {}).software);
  assert.ok(summarizeAdapter({ vendor: 'x', description: 'y' }, {}, true).software, 'isFallbackAdapter');
  const h100 = summarizeAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' }, { maxBufferSize: 2 ** 40, maxStorageBufferBindingSize: 2 ** 31 });
  assert.not.ok(h100.software);
  assert.is(h100.maxBufferSize, 2 ** 40);
});

test('auto prefers tfjs-node when it is installed, and never tries the later ones', async () => {
  const env = machine(['@tensorflow/tfjs-node', '@tensorflow/tfjs-backend-cpu'], false);
  const selection = await useBackend('auto', 'train', env);
  assert.is(selection.candidate, 'tfjs-node');
  assert.is(selection.name, 'tensorflow');
  assert.is(tf.getBackend(), 'tensorflow');
  assert.is(selection.candidates.find((s) => s.candidate === 'cpu')!.available, null);
  assert.not.ok(env.imported.includes('@tensorflow/tfjs-node-gpu'), 'no CUDA: the gpu package is not even imported');
});

test('auto takes tfjs-node-gpu first where a CUDA GPU is usable', async () => {
  const env = machine(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'], true);
  const selection = await useBackend('auto', 'train', env);
  assert.is(selection.candidate, 'tfjs-node-gpu');
});

test('an explicitly requested backend that is missing is a UserError naming the package and the install', async () => {
  const env = machine(['@tensorflow/tfjs-backend-cpu'], false);
  try {
    await useBackend('tensorflow', 'train', env);
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

test('a selection is the handle code above backend/ is handed: name, preference, capabilities and faults; activateBackend makes it current again', async () => {
  const wasm = await useBackend('wasm');
  assert.equal([wasm.name, wasm.preference], ['wasm', 'wasm']);
  assert.is(wasm.faults, wasm.capabilities.faults);
  assert.ok(wasm.faults !== undefined, 'wasm says how its heap running out shows');
  const cpu = await useBackend('cpu');
  assert.is(tf.getBackend(), 'cpu');
  await activateBackend(wasm);
  assert.is(tf.getBackend(), 'wasm');
  await activateBackend(wasm);
  assert.is(tf.getBackend(), 'wasm', 'a no-op when already current');
  await activateBackend(cpu);
  assert.is(tf.getBackend(), 'cpu');
});

test('the real wasm backend initialises from node_modules by path, and cpu is selectable', async () => {
  const wasm = await useBackend('wasm');
  assert.is(wasm.name, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).arraySync());
  assert.equal(sum, [4, 6]);
  const cpu = await useBackend('cpu');
  assert.is(cpu.name, 'cpu');
  assert.is(tf.getBackend(), 'cpu');
});

/** A backend osteo does not ship, placed where a new one would go: after tfjs-node, before wasm. */
const dummy: BackendCandidate = {
  name: 'dummy-accelerator',
  backend: 'dummy',
  package: 'dummy-accelerator-package',
  installHint: 'install the dummy',
  capabilities: {
    workerThreads: { trainsInWorkers: false, why: 'the dummy runs in one process' },
    activationMemory: { budgetBytes: 1024, bytesPerActivationFloat: 4 },
  },
};

/** The training order (the tfjs candidates), where a new training backend goes. */
const trainers = backendCandidates.filter(candidateTrains);

function withDummy(present: string[]): BackendEnvironment & { imported: string[]; activated: number } {
  const base = machine(present, false);
  const record: BackendCandidate = { ...dummy, activated: () => void (env.activated += 1) };
  const env = {
    ...base,
    activated: 0,
    candidates: [...trainers.slice(0, 3), record, ...trainers.slice(3)],
    async importModule(specifier: string) {
      if (specifier !== dummy.package) return base.importModule(specifier);
      base.imported.push(specifier);
      if (tf.findBackendFactory('dummy') === null) tf.registerBackend('dummy', () => new MathBackendCPU());
      return {};
    },
  };
  return env;
}

test('a candidate added as one record is tried by auto in its place, and its capabilities reach the selection', async () => {
  const env = withDummy(['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu']);
  const selection = await useBackend('auto', 'train', env);
  assert.is(selection.candidate, 'dummy-accelerator');
  assert.is(selection.name, 'dummy');
  assert.is(tf.getBackend(), 'dummy');
  assert.is(env.activated, 1, 'its activation hook ran once');
  assert.equal(env.imported, ['webgpu', '@tensorflow/tfjs-node', 'dummy-accelerator-package'], 'wasm and cpu are not imported');
  assert.is(selection.capabilities, dummy.capabilities);
  assert.equal(
    selection.candidates.map((s) => [s.candidate, s.available]),
    [['tfjs-node-gpu', false], ['webgpu', false], ['tfjs-node', false], ['dummy-accelerator', true], ['wasm', null], ['cpu', null]],
  );
  assert.match(selection.reason, /dummy-accelerator is the first available after tfjs-node-gpu, webgpu, tfjs-node/);
  const explicit = await useBackend('dummy', 'train', withDummy([]));
  assert.is(explicit.reason, 'requested with --backend dummy');
});

test('a missing added candidate reports its own package and install hint', async () => {
  const env = machine(['@tensorflow/tfjs-backend-cpu'], false);
  try {
    await useBackend('dummy', 'train', { ...env, candidates: [dummy, ...backendCandidates] });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /dummy-accelerator-package: not installed; install the dummy/);
  }
});

test('the shipped candidates carry their capabilities: wasm trains in workers within a bounded heap, tensorflow in one process', async () => {
  const wasm = await useBackend('wasm');
  const threads = wasm.capabilities.workerThreads;
  assert.ok(threads.trainsInWorkers && threads.defaultCount() >= 1);
  assert.is(wasm.capabilities.activationMemory?.budgetBytes, 3 * 1024 ** 3);
  assert.is(wasm.capabilities.faults?.describe(new Error('engine worker: Aborted(). Build with -sASSERTIONS for more info.')), 'the wasm heap (4 GiB per worker) ran out');
  assert.is(wasm.capabilities.faults?.describe(new Error('shapes do not match')), null);
  const cpu = await useBackend('cpu');
  assert.is(cpu.capabilities.activationMemory, undefined);
  const node = await useBackend('tensorflow', 'train', machine(['@tensorflow/tfjs-node'], false));
  assert.equal(node.capabilities.workerThreads, { trainsInWorkers: false, why: 'tfjs-node already uses every core in one process' });
  assert.is(workerThreadBackends(), 'wasm and cpu');
});

test('OSTEO_BACKEND: unset or empty leaves the default, a valid name is taken, anything else is a UserError naming it', () => {
  assert.is(backendFromEnvironment({}), undefined);
  assert.is(backendFromEnvironment({ OSTEO_BACKEND: '' }), undefined);
  assert.is(backendFromEnvironment({ OSTEO_BACKEND: 'wasm' }), 'wasm');
  for (const value of ['WASM', 'foo', ' cpu']) {
    try {
      backendFromEnvironment({ OSTEO_BACKEND: value });
      assert.unreachable(`'${value}' should have thrown`);
    } catch (error) {
      assert.instance(error, UserError);
      const message = (error as Error).message;
      assert.ok(message.includes(`OSTEO_BACKEND '${value}' names no backend`), message);
      assert.match(message, /auto, tensorflow, webgpu, wasm, cpu/);
    }
  }
});

test('useBackend with an unknown name is a UserError listing the choices, not a crash', async () => {
  for (const value of ['', 'WASM', 'tfjs-node']) {
    try {
      await useBackend(value, 'train', machine([], false));
      assert.unreachable(`'${value}' should have thrown`);
    } catch (error) {
      assert.instance(error, UserError);
      assert.match((error as Error).message, /choose one of auto, tensorflow, webgpu, wasm, cpu/);
    }
  }
});

const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) => execFileSync(process.execPath, osteoArgv(args), { encoding: 'utf8', env, stdio: 'pipe' });

test('osteo --help lists the commands', () => {
  const help = cli(['--help']);
  assert.match(help, /Usage: osteo/);
  assert.match(help, /info/);
});

test('osteo info --json reports the inference and training backends, every candidate and every onnxruntime provider', () => {
  const info = JSON.parse(cli(['info', '--json'])) as Record<string, unknown>;
  assert.ok(['onnxruntime-cuda', 'onnxruntime-webgpu', 'onnxruntime-cpu', 'tensorflow', 'webgpu'].includes(info.backend as string), `${info.backend}: onnxruntime's CPU provider or better`);
  const training = info.training as { backend: string };
  assert.ok(['tensorflow', 'webgpu', 'wasm', 'cpu'].includes(training.backend), 'auto trains on tfjs');
  const providers = (info.onnxruntime as { providers: Array<{ name: string; bundled: boolean; usable: boolean; threads?: number }> }).providers;
  const cpu = providers.find((p) => p.name === 'cpu')!;
  assert.ok(cpu.bundled && cpu.usable);
  assert.is(cpu.threads, info.cpuCores);
  assert.ok(providers.some((p) => p.name === 'webgpu' && p.bundled));
  assert.ok(providers.some((p) => p.name === 'cuda' && !p.bundled));
  assert.is(info.tfjsVersion, '4.22.0');
  assert.type(info.cpuCores, 'number');
  assert.type(info.wasmSimd, 'boolean');
  const candidates = info.candidates as Array<{ candidate: string; available: boolean | null; reason: string }>;
  assert.equal(candidates.map((c) => c.candidate), ['onnxruntime-cuda', 'tfjs-node-gpu', 'onnxruntime-webgpu', 'webgpu', 'onnxruntime-cpu', 'tfjs-node', 'wasm', 'cpu']);
  for (const c of candidates) if (c.available === false) assert.ok(c.reason.length > 0);
});

test('osteo info --backend with an unknown name exits non-zero and says the choices', () => {
  try {
    cli(['info', '--backend', 'metal']);
    assert.unreachable('should have failed');
  } catch (error) {
    const e = error as { status: number; stderr: string };
    assert.is.not(e.status, 0);
    assert.match(e.stderr, /auto, tensorflow, webgpu, wasm, cpu/);
  }
});

test('osteo info says where the backend request came from: OSTEO_BACKEND, or the --backend flag (which wins over it)', () => {
  const { OSTEO_BACKEND: _unset, ...unset } = process.env;
  const reasonOf = (args: string[], env: NodeJS.ProcessEnv) => (JSON.parse(cli(['info', '--json', ...args], env)) as { backend: string; reason: string });
  const fromEnvironment = reasonOf([], { ...unset, OSTEO_BACKEND: 'cpu' });
  assert.is(fromEnvironment.backend, 'cpu');
  assert.is(fromEnvironment.reason, 'requested with OSTEO_BACKEND=cpu');
  const fromFlag = reasonOf(['--backend', 'cpu'], { ...unset, OSTEO_BACKEND: 'wasm' });
  assert.is(fromFlag.backend, 'cpu');
  assert.is(fromFlag.reason, 'requested with --backend cpu');
  assert.match(cli(['info'], { ...unset, OSTEO_BACKEND: 'cpu' }), /inference: cpu \(cpu\) — requested with OSTEO_BACKEND=cpu\ntraining:  cpu \(cpu\) — requested with OSTEO_BACKEND=cpu/);
});

test('OSTEO_BACKEND: empty means unset, a valid name is used, a bad one is a user error naming the variable (not a crash), --help still works', () => {
  const withBackend = (value: string) => ({ ...process.env, OSTEO_BACKEND: value });
  const backendOf = (env: NodeJS.ProcessEnv) => (JSON.parse(cli(['info', '--json'], env)) as { backend: string }).backend;
  const { OSTEO_BACKEND: _unset, ...unset } = process.env;
  assert.is(backendOf(withBackend('')), backendOf(unset));
  assert.is(backendOf(withBackend('cpu')), 'cpu');
  for (const bad of ['WASM', 'foo']) {
    try {
      cli(['info'], withBackend(bad));
      assert.unreachable(`OSTEO_BACKEND=${bad} should have failed`);
    } catch (error) {
      const e = error as { status: number; stderr: string };
      assert.is(e.status, 1, e.stderr);
      assert.match(e.stderr, new RegExp(`'${bad}' from env 'OSTEO_BACKEND'.*auto, tensorflow, webgpu, wasm, cpu`));
      assert.not.match(e.stderr, /internal error/);
    }
  }
  assert.match(cli(['--help'], withBackend('foo')), /Usage: osteo/);
});

test.run();

test('webgpu faults are named for the user: out of memory, a lost device; anything else is not a fault', () => {
  assert.match(describeWebgpuFault(new Error('GPUOutOfMemoryError: Failed to allocate 2147483648 bytes')) ?? '', /^the GPU ran out of memory \(GPUOutOfMemoryError/);
  assert.match(describeWebgpuFault(new DeviceFault('the GPU device was lost (reset)')) ?? '', /^the GPU device was lost \(reset\)$/);
  assert.match(describeWebgpuFault(new Error('Device was lost during mapAsync')) ?? '', /^the GPU device was lost/);
  assert.is(describeWebgpuFault(new Error('shapes do not match')), null);
});
