/**
 * The onnxruntime candidates (src/backend/onnx-candidates.ts) and selection by purpose: auto's order
 * for inference and for training on simulated machines, forcing each candidate, refusing training
 * on an inference-only one, the cache across purposes, `osteo info`'s provider listing with a faked
 * missing CUDA 12 library, the faults of a session (a fake onnxruntime module provokes them), and the
 * WebGPU provider on whatever adapter this machine has (lavapipe in CI): forced by name it runs,
 * auto passes over a software adapter.
 */
import { availableParallelism } from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { activateBackend, createOnnxSession, nodeEnvironment, onnxRuntimeInfo, useBackend, useBackends, type BackendEnvironment, type OnnxRuntimeModule } from '../../src/backend/index.js';
import { formatOnnxRuntimeInfo } from '../../src/backend/info.js';
import { onnxSessions } from '../../src/backend/onnx-candidates.js';
import { diagnoseOnnxCuda, probeGraph, probeOnnxWebgpuInChild } from '../../src/backend/onnx-probe.js';
import { summarizeAdapter, type AdapterProbe } from '../../src/backend/webgpu.js';
import type { CudaProbe } from '../../src/backend/cuda.js';
import { captureMain } from '../helpers/cli.js';
import { refusal } from '../helpers/refusal.js';
import { testWith, type Requirement } from '../helpers/requirements.js';

process.env['XDG_RUNTIME_DIR'] ??= '/tmp';

const notFound = (specifier: string) => Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });

const lavapipe: AdapterProbe = {
  summary: summarizeAdapter({ vendor: 'mesa', architecture: 'llvmpipe', device: '', description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)' }, { maxBufferSize: 2 ** 32 - 1, maxStorageBufferBindingSize: 2 ** 27 }),
};
const h100: AdapterProbe = {
  summary: summarizeAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' }, { maxBufferSize: 2 ** 40, maxStorageBufferBindingSize: 2 ** 31 }),
};

/** onnxruntime-node as a build that lists cpu, webgpu and cuda as present (the real one lists cuda only where it was downloaded). */
const allProviders = { listSupportedBackends: () => [{ name: 'cpu', bundled: true }, { name: 'webgpu', bundled: true }, { name: 'cuda', bundled: true }] };

interface Machine {
  /** packages that import; 'onnxruntime-node' imports as `allProviders` */
  present: string[];
  /** tfjs-node-gpu's CUDA 11 (true: usable) */
  cuda11?: boolean;
  /** why onnxruntime's CUDA provider cannot run, null: it can */
  onnxCuda?: string | null;
  /** why onnxruntime's WebGPU provider cannot start, null: it can */
  onnxWebgpu?: string | null;
  adapter?: AdapterProbe;
}

function machine(spec: Machine): BackendEnvironment & { imported: string[]; probed: string[] } {
  const imported: string[] = [];
  const probed: string[] = [];
  return {
    imported,
    probed,
    cudaUnavailableReason: () => (spec.cuda11 ? null : 'no NVIDIA driver'),
    webgpuAdapter: () => spec.adapter,
    onnxProviderUnavailableReason(provider) {
      probed.push(provider);
      return (provider === 'cuda' ? spec.onnxCuda : spec.onnxWebgpu) ?? null;
    },
    async importModule(specifier) {
      imported.push(specifier);
      if (!spec.present.includes(specifier)) throw notFound(specifier);
      if (specifier === 'onnxruntime-node') return allProviders;
      if (specifier.startsWith('@tensorflow/tfjs-node')) {
        if (tf.findBackendFactory('tensorflow') === null) tf.registerBackend('tensorflow', () => new MathBackendCPU());
        return {};
      }
      if (specifier === 'webgpu') return {};
      return nodeEnvironment.importModule(specifier);
    },
  };
}

test.after.each(() => {
  if (tf.findBackendFactory('tensorflow') !== null) tf.removeBackend('tensorflow');
});

const ort = 'onnxruntime-node';
const tfjsFallbacks = ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu'];
const noCuda12 = 'no NVIDIA GPU (nvidia-smi is missing, fails or lists none)';
const statusOf = (selection: { candidates: { candidate: string; available: boolean | null; reason: string; details?: Record<string, string> }[] }, name: string) => selection.candidates.find((s) => s.candidate === name)!;

test('infer: a usable CUDA 12 provider comes first; train: the tfjs order, without the onnxruntime candidates', async () => {
  const env = machine({ present: [ort, ...tfjsFallbacks], onnxCuda: null });
  const infer = await useBackend('auto', 'infer', env);
  assert.is(infer.candidate, 'onnxruntime-cuda');
  assert.is(infer.purpose, 'infer');
  assert.is(infer.capabilities.onnxSessions?.provider, 'cuda');
  assert.is(infer.capabilities.trains, false);
  assert.is(infer.capabilities.onnxSessions?.defaultThreads(), 1);
  const train = await useBackend('auto', 'train', env);
  assert.is(train.candidate, 'wasm');
  assert.equal(train.candidates.map((s) => s.candidate), ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu']);
  assert.is(train.capabilities.onnxSessions, undefined);
});

test('infer: CUDA through tfjs-node-gpu when only its CUDA 11 works; then WebGPU on a hardware adapter, onnxruntime before tfjs', async () => {
  const cuda11 = machine({ present: [ort, '@tensorflow/tfjs-node-gpu', ...tfjsFallbacks], cuda11: true, onnxCuda: 'missing libcudnn.so.9 (cuDNN 9)' });
  const viaTfjs = await useBackend('auto', 'infer', cuda11);
  assert.is(viaTfjs.candidate, 'tfjs-node-gpu');
  assert.match(statusOf(viaTfjs, 'onnxruntime-cuda').reason, /^skipped: missing libcudnn\.so\.9 \(cuDNN 9\)$/);

  const gpu = machine({ present: [ort, 'webgpu', ...tfjsFallbacks], onnxCuda: noCuda12, adapter: h100 });
  const webgpu = await useBackend('auto', 'infer', gpu);
  assert.is(webgpu.candidate, 'onnxruntime-webgpu');
  assert.is(webgpu.capabilities.onnxSessions?.provider, 'webgpu');
  assert.equal(gpu.probed, ['cuda', 'webgpu'], 'the WebGPU provider was started (in a child process, here faked) once the adapter passed');
  assert.match(statusOf(webgpu, 'onnxruntime-webgpu').details?.['description'] ?? '', /H100/);
  assert.is(statusOf(webgpu, 'webgpu').available, null, "tfjs's webgpu is not tried");
});

test('infer: a software adapter is never taken by auto, and the provider is not even started; the CPU provider comes before tfjs-node and wasm', async () => {
  const env = machine({ present: [ort, 'webgpu', '@tensorflow/tfjs-node', ...tfjsFallbacks], onnxCuda: noCuda12, adapter: lavapipe });
  const selection = await useBackend('auto', 'infer', env);
  assert.is(selection.candidate, 'onnxruntime-cpu');
  assert.is(selection.capabilities.onnxSessions?.provider, 'cpu');
  assert.is(selection.capabilities.onnxSessions?.defaultThreads(), availableParallelism());
  assert.match(statusOf(selection, 'onnxruntime-webgpu').reason, /skipped: the only adapter is a software one \(llvmpipe: Mesa 25\.0\.7 \(LLVM 15\.0\.6\)\), slower than wasm; --backend onnxruntime-webgpu uses it anyway/);
  assert.match(statusOf(selection, 'webgpu').reason, /--backend webgpu uses it anyway/);
  assert.equal(env.probed, ['cuda'], "onnxruntime's WebGPU provider was not started for a software adapter");
  assert.is(statusOf(selection, 'tfjs-node').available, null);
  assert.equal(selection.candidates.map((s) => s.candidate), ['onnxruntime-cuda', 'tfjs-node-gpu', 'onnxruntime-webgpu', 'webgpu', 'onnxruntime-cpu', 'tfjs-node', 'wasm', 'cpu']);
  assert.match(selection.reason, /onnxruntime-cpu is the first available after onnxruntime-cuda, tfjs-node-gpu, onnxruntime-webgpu, webgpu/);
});

test('infer: without the webgpu package the onnxruntime adapter cannot be judged, so auto passes over it; without onnxruntime, tfjs-node, then wasm', async () => {
  const noDawn = await useBackend('auto', 'infer', machine({ present: [ort, ...tfjsFallbacks], onnxCuda: noCuda12 }));
  assert.is(noDawn.candidate, 'onnxruntime-cpu');
  assert.match(statusOf(noDawn, 'onnxruntime-webgpu').reason, /cannot be judged without the webgpu package.*--backend onnxruntime-webgpu uses it anyway/);
  const node = await useBackend('auto', 'infer', machine({ present: ['@tensorflow/tfjs-node', ...tfjsFallbacks], onnxCuda: noCuda12 }));
  assert.is(node.candidate, 'tfjs-node');
  assert.match(statusOf(node, 'onnxruntime-cpu').reason, /^not installed$/);
  const wasm = await useBackend('auto', 'infer', machine({ present: tfjsFallbacks, onnxCuda: noCuda12 }));
  assert.is(wasm.candidate, 'wasm');
});

test('forcing each candidate: by its own name a software adapter is taken; the family name takes the best provider as auto would; a missing CUDA provider names why and how', async () => {
  const env = () => machine({ present: [ort, 'webgpu', ...tfjsFallbacks], onnxCuda: 'the CUDA 12 provider is not installed (no libonnxruntime_providers_cuda.so)', adapter: lavapipe });
  const cpu = await useBackend('onnxruntime-cpu', 'infer', env());
  assert.equal([cpu.name, cpu.candidate, cpu.reason], ['onnxruntime-cpu', 'onnxruntime-cpu', 'requested with --backend onnxruntime-cpu']);
  const forced = env();
  const webgpu = await useBackend('onnxruntime-webgpu', 'infer', forced);
  assert.is(webgpu.candidate, 'onnxruntime-webgpu');
  assert.equal(forced.probed, ['webgpu'], 'forced: the adapter is not judged, the provider is still started in a child first');
  const family = await useBackend('onnxruntime', 'infer', env());
  assert.is(family.candidate, 'onnxruntime-cpu', 'lavapipe is skipped as by auto');
  assert.is(statusOf(family, 'wasm').available, null);
  const message = await refusal(useBackend('onnxruntime-cuda', 'infer', env()));
  assert.match(message, /backend 'onnxruntime-cuda' is not available:\n {2}onnxruntime-node: the CUDA 12 provider is not installed/);
  assert.match(message, /ONNXRUNTIME_NODE_INSTALL=cuda12 .*docs\/onnx\.md.*cuDNN 9/);
  const broken = await refusal(useBackend('onnxruntime-webgpu', 'infer', machine({ present: [ort], onnxWebgpu: "onnxruntime's WebGPU provider did not start in a probe process, which was killed by SIGSEGV", adapter: lavapipe })));
  assert.match(broken, /SIGSEGV.*Vulkan driver/s);
  // no purpose given: a name only an inference candidate answers to means inference
  assert.is((await useBackend('onnxruntime-cpu', undefined, env())).purpose, 'infer');
  assert.is((await useBackend('auto', undefined, env())).purpose, 'train');
});

test('training on an inference-only candidate is refused with what to use; a command that trains and evaluates takes auto apart, a named backend for both', async () => {
  for (const name of ['onnxruntime-cpu', 'onnxruntime']) {
    const message = await refusal(useBackend(name, 'train', machine({ present: [ort, ...tfjsFallbacks] })));
    assert.match(message, new RegExp(`backend '${name}' runs trained models only .*Use --backend auto .* or one of tensorflow, webgpu, wasm, cpu`));
    await refusal(useBackends(name, machine({ present: [ort, ...tfjsFallbacks] })), /runs trained models only/);
  }
  const env = machine({ present: [ort, ...tfjsFallbacks], onnxCuda: noCuda12 });
  const auto = await useBackends('auto', env);
  assert.equal([auto.train.candidate, auto.infer.candidate], ['wasm', 'onnxruntime-cpu']);
  const named = await useBackends('cpu', env);
  assert.is(named.infer, named.train);
  assert.is(named.train.candidate, 'cpu');
});

test('the selection cache keeps each purpose apart, and an onnxruntime selection leaves tfjs where it was', async () => {
  const env = machine({ present: [ort, ...tfjsFallbacks], onnxCuda: noCuda12 });
  const train = await useBackend('auto', 'train', env);
  assert.is(tf.getBackend(), 'wasm');
  const infer = await useBackend('auto', 'infer', env);
  assert.is(infer.candidate, 'onnxruntime-cpu');
  assert.is(tf.getBackend(), 'wasm', 'onnxruntime switches no tfjs backend');
  const imports = env.imported.length;
  assert.is(await useBackend('auto', 'infer', env), infer);
  assert.is(await useBackend('auto', 'train', env), train);
  assert.is(env.imported.length, imports, 'both answered from the cache');
  await useBackend('cpu', 'train', env);
  const again = await useBackend('auto', 'train', env);
  assert.is(tf.getBackend(), 'wasm', 'a tfjs selection whose backend was switched away is made again');
  assert.is(again.candidate, 'wasm');
  assert.is(await useBackend('auto', 'infer', env), infer, 'the onnxruntime one still holds');
});

test('activating an onnxruntime handle switches no tfjs backend, also for a copy of the handle; a tfjs handle is made current again', async () => {
  const env = machine({ present: [ort, ...tfjsFallbacks], onnxCuda: noCuda12 });
  const infer = await useBackend('onnxruntime-cpu', 'infer', env);
  const cpu = await useBackend('cpu', 'train', env);
  assert.is(tf.getBackend(), 'cpu');
  await activateBackend(infer);
  await activateBackend({ ...infer });
  assert.is(tf.getBackend(), 'cpu', 'tfjs stays where it was: it only hosts model building beside onnxruntime');
  await useBackend('wasm', 'train', env);
  await activateBackend(cpu);
  assert.is(tf.getBackend(), 'cpu');
});

test('the commands: training on onnxruntime exits 1 with what to use; osteo info --backend onnxruntime-cpu names it for inference and says training cannot use it', async () => {
  const train = await captureMain(['train', '--model', 'resnet18', '--data', 'nowhere', '--backend', 'onnxruntime-cpu']);
  assert.is(train.code, 1, train.stderr);
  assert.match(train.stderr, /backend 'onnxruntime-cpu' runs trained models only .*Use --backend auto/);
  const exported = await captureMain(['export', '--run', 'nowhere', '--format', 'pth', '--backend', 'onnxruntime']);
  assert.is(exported.code, 1, exported.stderr);
  assert.match(exported.stderr, /cannot train, nor build the tfjs models that training and the tfjs exports compute on/);
  const info = await captureMain(['info', '--json', '--backend', 'onnxruntime-cpu']);
  assert.is(info.code, 0, info.stderr);
  const json = JSON.parse(info.stdout) as { backend: string; reason: string; training: { unavailable?: string } };
  assert.equal([json.backend, json.reason], ['onnxruntime-cpu', 'requested with --backend onnxruntime-cpu']);
  assert.match(json.training.unavailable ?? '', /runs trained models only/);
});

/** nvidia-smi and the loader as a machine with an H100 where the CUDA provider is installed but cuDNN 9 is not. */
function cudaMachine(options: { driver?: string; missing: string[]; lddMissing?: string[] }): CudaProbe {
  return {
    run(command, args) {
      if (command === 'nvidia-smi') return `NVIDIA H100 80GB HBM3, ${options.driver ?? '550.54.15'}, 9.0\n`;
      if (command === 'ldd') return [`\tlibcublas.so.12 => /usr/local/cuda/lib64/libcublas.so.12 (0x1)`, ...(options.lddMissing ?? []).map((name) => `\t${name} => not found`)].join('\n') + `\n${args[0]}`;
      return null;
    },
    libraryFound: (name) => !options.missing.includes(name),
  };
}

const installedCuda = {
  listSupportedBackends: () => [{ name: 'cpu', bundled: true }, { name: 'webgpu', bundled: true }, { name: 'cuda', bundled: false }, { name: 'tensorrt', bundled: false }],
} as unknown as OnnxRuntimeModule;

test('osteo info lists each provider: bundled or installed, usable or why not, with a missing CUDA 12 library by name', async () => {
  const info = await onnxRuntimeInfo({
    runtime: async () => installedCuda,
    env: machine({ present: [], onnxWebgpu: null, adapter: lavapipe }),
    cudaProbe: cudaMachine({ missing: ['libcudnn.so.9'], lddMissing: ['libcudnn.so.9', 'libcufft.so.11'] }),
    installed: (library) => library.endsWith('libonnxruntime_providers_cuda.so'),
  });
  assert.ok(!('error' in info));
  if ('error' in info) return;
  const byName = Object.fromEntries(info.providers.map((p) => [p.name, p]));
  assert.equal([byName['cpu']!.bundled, byName['cpu']!.usable, byName['cpu']!.threads], [true, true, availableParallelism()]);
  assert.equal([byName['webgpu']!.usable, byName['webgpu']!.adapter?.['kind']], [true, 'software (runs on the CPU)']);
  const cuda = byName['cuda']!;
  assert.equal([cuda.bundled, cuda.installed, cuda.usable], [false, true, false]);
  assert.equal(cuda.missingLibraries, ['libcudnn.so.9', 'libcufft.so.11'], "the list's missing one, then what ldd says the provider library lacks");
  assert.match(cuda.reason, /missing libcudnn\.so\.9 \(cuDNN 9\), libcufft\.so\.11 \(cuFFT 11 \(CUDA 12\)\): install CUDA 12\.x and cuDNN 9\.x/);
  assert.equal([byName['tensorrt']!.installed, byName['tensorrt']!.usable], [false, false]);
  const text = formatOnnxRuntimeInfo(info).join('\n');
  assert.match(text, /^onnxruntime 1\.31\.1 execution providers:$/m);
  assert.match(text, /yes cpu +bundled; usable; \d+ threads?/);
  assert.match(text, /no {2}cuda +installed; .*\n +missing: libcudnn\.so\.9, libcufft\.so\.11/);
  assert.match(text, /kind: software \(runs on the CPU\)/);
});

test('the CUDA 12 diagnosis: not installed, no GPU, a driver older than CUDA 12, every library present', () => {
  const library = '/x/libonnxruntime_providers_cuda.so';
  assert.match(diagnoseOnnxCuda(cudaMachine({ missing: [] }), library, false).reason!, /^the CUDA 12 provider is not installed \(no \/x\/libonnxruntime_providers_cuda\.so; it is an opt-in download, see docs\/onnx\.md\)$/);
  const noGpu = diagnoseOnnxCuda({ run: () => null, libraryFound: () => false }, library, true, 'linux');
  assert.equal([noGpu.reason, noGpu.missingLibraries], ['no NVIDIA GPU (nvidia-smi is missing, fails or lists none)', []]);
  assert.match(diagnoseOnnxCuda(cudaMachine({ driver: '470.82.01', missing: [] }), library, true, 'linux').reason!, /NVIDIA driver 470\.82\.01 is older than 525\.60\.13, the first for CUDA 12/);
  const ready = diagnoseOnnxCuda(cudaMachine({ missing: [] }), library, true, 'linux');
  assert.equal([ready.reason, ready.gpus[0]?.name], [null, 'NVIDIA H100 80GB HBM3']);
});

/** A fake onnxruntime whose sessions fail as `fail` says: at build, or at run. */
function failingRuntime(fail: { create?: string; run?: string; providers?: string[] }): () => Promise<OnnxRuntimeModule> {
  class Tensor {
    constructor(
      readonly type: string,
      readonly data: Float32Array,
      readonly dims: number[],
    ) {}
    dispose() {}
  }
  const module = {
    listSupportedBackends: () => (fail.providers ?? ['cpu', 'webgpu']).map((name) => ({ name, bundled: true })),
    Tensor,
    InferenceSession: {
      async create() {
        if (fail.create) throw new Error(fail.create);
        return {
          inputNames: ['input'],
          outputNames: ['logits'],
          async run() {
            throw new Error(fail.run ?? 'unreachable');
          },
          async release() {},
        };
      },
    },
  };
  return async () => module as unknown as OnnxRuntimeModule;
}

const label = { model: 'resnet50', imageSize: 224, batch: 8 };
const input = new Float32Array(8 * 3 * 224 * 224);
const shape = [8, 3, 224, 224];

test("a session's faults are UserErrors naming the model, image size and batch, with the fix: a missing provider, a failed build, out of memory, a lost device", async () => {
  const missing = await refusal(onnxSessions('webgpu', () => 1, failingRuntime({ providers: ['cpu'] })).create(new Uint8Array(4), { label }));
  assert.match(missing, /no 'webgpu' execution provider here for resnet50 at 224 px, batch 8 \(it has cpu\): choose --backend onnxruntime-cpu/);
  const oomAtBuild = await refusal(onnxSessions('webgpu', () => 1, failingRuntime({ create: 'std::bad_alloc' })).create(new Uint8Array(4), { label }));
  assert.match(oomAtBuild, /could not build a webgpu session for resnet50 at 224 px, batch 8: std::bad_alloc; free memory, or use a smaller batch \(--batch-size\), model or image size, or choose --backend onnxruntime-cpu/);
  const sessions = (run: string) => onnxSessions('webgpu', () => 1, failingRuntime({ run }));
  const oom = await (await sessions('Failed to allocate memory for requested buffer of size 411041792').create(new Uint8Array(4), { label })).run(input, shape).catch((error: Error) => error.message);
  assert.match(String(oom), /onnxruntime \(webgpu\) ran out of memory on resnet50 at 224 px, batch 8: use a smaller batch \(--batch-size\) or image size, or choose --backend onnxruntime-cpu/);
  const lost = await refusal((await sessions('WebGPU device was lost: DeviceLost').create(new Uint8Array(4), { label })).run(input, shape));
  assert.match(lost, /the GPU device was lost while onnxruntime \(webgpu\) ran resnet50 at 224 px, batch 8: run again, or choose --backend onnxruntime-cpu/);
  const corrupt = await refusal(onnxSessions('cpu', () => 1).create(new TextEncoder().encode('no graph here'), { label: { model: 'resnet18', imageSize: 32, batch: 4 } }));
  assert.match(corrupt, /could not build a cpu session for resnet18 at 32 px, batch 4: .*export it again/);
});

test("the candidates' faults name onnxruntime's own failures and nothing else", async () => {
  const selection = await useBackend('onnxruntime-cpu', 'infer', machine({ present: [ort] }));
  assert.is(selection.faults?.describe(new Error('std::bad_alloc')), 'onnxruntime (cpu) ran out of memory');
  assert.is(selection.faults?.describe(new Error('shapes do not match')), null);
  const webgpu = await useBackend('onnxruntime-webgpu', 'infer', machine({ present: [ort], adapter: h100 }));
  assert.is(webgpu.faults?.describe(new Error('Device is lost')), 'the GPU device was lost while onnxruntime (webgpu) ran');
});

test("the provider probe's one-node graph is a model onnxruntime runs: Relu on the CPU provider", async () => {
  const session = await createOnnxSession(probeGraph(), { label: { model: 'probe', imageSize: 1 }, threads: 1 });
  try {
    assert.equal(Array.from(await session.run(Float32Array.from([-1, 2, -3, 4]), [1, 4])), [0, 2, 0, 4]);
  } finally {
    await session.release();
  }
});

/** A Vulkan adapter for Dawn, looked at through the webgpu package's Dawn (the driver onnxruntime's own Dawn uses too). */
const vulkanAdapter: Requirement = {
  name: 'a WebGPU adapter for Dawn (a Vulkan driver)',
  install: 'on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers (see .ci/run)',
  probe() {
    const probe = nodeEnvironment.webgpuAdapter();
    if (probe === undefined) return 'the webgpu package, which probes the adapter, is not installed';
    return 'reason' in probe ? probe.reason : null;
  },
};

testWith(vulkanAdapter, test, "onnxruntime's WebGPU provider on this machine's adapter: forced by name it runs a session; auto takes it only on a hardware adapter", async () => {
  assert.is(probeOnnxWebgpuInChild(), null, 'the child-process probe ran Relu on the WebGPU provider');
  const forced = await useBackend('onnxruntime-webgpu', 'infer');
  assert.is(forced.candidate, 'onnxruntime-webgpu');
  const session = await forced.capabilities.onnxSessions!.create(probeGraph(), { label: { model: 'probe', imageSize: 1 } });
  try {
    assert.is(session.provider, 'webgpu');
    assert.equal(Array.from(await session.run(Float32Array.from([-1, 2, -3, 4]), [1, 4])), [0, 2, 0, 4]);
  } finally {
    await session.release();
  }
  const auto = await useBackend('auto', 'infer');
  const adapter = nodeEnvironment.webgpuAdapter()!;
  const status = statusOf(auto, 'onnxruntime-webgpu');
  if ('summary' in adapter && adapter.summary.software) {
    assert.is.not(auto.candidate, 'onnxruntime-webgpu');
    assert.match(status.reason, /skipped: the only adapter is a software one .*--backend onnxruntime-webgpu uses it anyway/);
  } else {
    assert.ok(auto.candidate === 'onnxruntime-webgpu' || auto.candidate === 'onnxruntime-cuda' || auto.candidate === 'tfjs-node-gpu', `a hardware adapter: auto took ${auto.candidate}`);
  }
});

test.run();
