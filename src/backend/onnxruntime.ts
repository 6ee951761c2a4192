/**
 * onnxruntime-node sessions: build one from an ONNX model's bytes on an execution provider, run a
 * float32 batch through it, release it. The package is loaded on first use, so a command that never
 * runs an ONNX graph never loads its native library. Its failures become UserErrors that name the
 * model, the image size and the batch, with what to do.
 *
 * Providers: the npm package bundles `cpu` (MLAS) and `webgpu` (Dawn); `cuda` and `tensorrt` exist
 * only where the package's install script downloaded them (docs/onnx.md says how).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { UserError, errorMessage } from '../util/index.js';

type Ort = typeof import('onnxruntime-node');
/** The parts of the onnxruntime-node module used here; tests hand in a fake one to provoke its failures. */
export type OnnxRuntimeModule = Pick<Ort, 'InferenceSession' | 'Tensor' | 'listSupportedBackends'>;
/** Loads the onnxruntime module (default: the package, once per process). */
export type OnnxRuntimeLoader = () => Promise<OnnxRuntimeModule>;
let loaded: Promise<Ort> | undefined;

export function onnxruntime(): Promise<Ort> {
  loaded ??= import('onnxruntime-node').catch((error: unknown) => {
    loaded = undefined;
    throw new UserError(`onnxruntime-node does not load (${errorMessage(error)}): reinstall the project's dependencies with npm ci`);
  });
  return loaded;
}

export type OnnxProvider = 'cpu' | 'webgpu' | 'cuda';
export const onnxProviders: readonly OnnxProvider[] = ['cpu', 'webgpu', 'cuda'];

export interface OnnxProviderStatus {
  name: string;
  /** Shipped inside the npm package (true), or present only where the install script fetched it. */
  bundled: boolean;
  /** Usable here: bundled, or its provider library is in the package's binary folder. */
  installed: boolean;
  /** The library a provider that is not bundled needs, where it looks for it. */
  library?: string;
}

/** Where onnxruntime-node keeps its native binding and the provider libraries its install script adds. */
export function onnxBinaryFolder(): string {
  const packageJson = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(dirname(packageJson), 'bin', 'napi-v6', process.platform, process.arch);
}

function providerLibrary(name: string): string {
  const file = process.platform === 'win32' ? `onnxruntime_providers_${name}.dll` : `libonnxruntime_providers_${name}.so`;
  return join(onnxBinaryFolder(), file);
}

/** Where the package's install script puts a provider that is not bundled (`cuda`: libonnxruntime_providers_cuda.so). */
export function onnxProviderLibrary(name: string): string {
  return providerLibrary(name);
}

/**
 * The execution providers this onnxruntime-node build knows. The package lists `cuda` and `tensorrt`
 * whether or not their libraries were downloaded, so a provider that is not bundled counts as
 * installed only when its library is present.
 */
export async function listOnnxProviders(runtime: OnnxRuntimeLoader = onnxruntime): Promise<OnnxProviderStatus[]> {
  const ort = await runtime();
  return ort.listSupportedBackends().map((backend) => {
    if (backend.bundled) return { name: backend.name, bundled: true, installed: true };
    const library = providerLibrary(backend.name);
    return { name: backend.name, bundled: false, installed: existsSync(library), library };
  });
}

/** What a session runs, for error messages: "resnet18 at 224 px, batch 8". */
export interface OnnxModelLabel {
  model: string;
  imageSize: number;
  /** the images per run the session is built for, where the caller knows it (a run names its own batch) */
  batch?: number;
}

export interface OnnxSessionOptions {
  provider?: OnnxProvider;
  /** Intra-op threads (default: one per core). */
  threads?: number;
  label: OnnxModelLabel;
}

export interface OnnxSession {
  readonly provider: OnnxProvider;
  readonly inputName: string;
  readonly outputName: string;
  /** The graph's output for `input`, a float32 tensor of `shape` (NCHW: [batch, 3, H, W]). */
  run(input: Float32Array, shape: readonly number[]): Promise<Float32Array>;
  release(): Promise<void>;
}

const outOfMemory = /bad_alloc|out of memory|failed to allocate|allocation failed|OOM/i;
const lostDevice = /device (was |is )?lost|DeviceLost/i;

/**
 * onnxruntime's own failures by their text: its allocators' out-of-memory errors and a lost WebGPU
 * device. null: not one of them. The phrase is what a candidate's `faults.describe` says.
 */
export function describeOnnxFault(error: unknown, provider: OnnxProvider): string | null {
  const message = errorMessage(error);
  if (outOfMemory.test(message)) return `onnxruntime (${provider}) ran out of memory`;
  if (lostDevice.test(message)) return `the GPU device was lost while onnxruntime (${provider}) ran`;
  return null;
}

function describe(label: OnnxModelLabel, batch = label.batch): string {
  return `${label.model} at ${label.imageSize} px${batch === undefined ? '' : `, batch ${batch}`}`;
}

/**
 * Builds a session; a provider this build lacks, or a graph it refuses, is a UserError naming the
 * model, its size and (where the label has one) the batch. `runtime`: tests hand in a fake module.
 */
export async function createOnnxSession(model: Uint8Array, options: OnnxSessionOptions, runtime: OnnxRuntimeLoader = onnxruntime): Promise<OnnxSession> {
  const ort = await runtime();
  const provider = options.provider ?? 'cpu';
  const providers = await listOnnxProviders(runtime);
  if (!providers.some((status) => status.name === provider && status.installed)) {
    const usable = providers.filter((status) => status.installed).map((status) => status.name);
    const hint = provider === 'cuda' ? 'install the CUDA 12 provider as docs/onnx.md describes, or choose --backend onnxruntime-cpu' : 'choose --backend onnxruntime-cpu';
    throw new UserError(`onnxruntime has no '${provider}' execution provider here for ${describe(options.label)} (it has ${usable.join(', ')}): ${hint}`);
  }
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new UserError(`onnxruntime threads must be a positive integer, got ${threads}`);
  let session: import('onnxruntime-node').InferenceSession;
  const gpuFix = provider === 'cpu' ? '' : ', or choose --backend onnxruntime-cpu';
  try {
    session = await ort.InferenceSession.create(model, {
      executionProviders: [provider],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
  } catch (error) {
    const message = errorMessage(error);
    const fix = outOfMemory.test(message)
      ? `free memory, or use a smaller batch (--batch-size), model or image size${gpuFix}`
      : lostDevice.test(message)
        ? `the GPU device was lost: run again${gpuFix}`
        : 'the .onnx file may be damaged or not an osteo export: export it again';
    throw new UserError(`onnxruntime could not build a ${provider} session for ${describe(options.label)}: ${message}; ${fix}`);
  }
  const [inputName, outputName] = [session.inputNames[0], session.outputNames[0]];
  if (inputName === undefined || outputName === undefined || session.inputNames.length !== 1 || session.outputNames.length !== 1) {
    await session.release();
    throw new UserError(`the ONNX graph of ${describe(options.label)} must have one input and one output, it has ${session.inputNames.length} and ${session.outputNames.length}`);
  }
  return {
    provider,
    inputName,
    outputName,
    async run(input, shape) {
      const batch = shape[0]!;
      if (shape.reduce((a, b) => a * b, 1) !== input.length) throw new Error(`${describe(options.label, batch)}: ${input.length} values for a [${shape.join(', ')}] input`);
      const tensor = new ort.Tensor('float32', input, [...shape]);
      try {
        const outputs = await session.run({ [inputName]: tensor });
        const output = outputs[outputName]!;
        const data = (output.data as Float32Array).slice();
        output.dispose();
        return data;
      } catch (error) {
        const message = errorMessage(error);
        if (outOfMemory.test(message)) throw new UserError(`onnxruntime (${provider}) ran out of memory on ${describe(options.label, batch)}: use a smaller batch (--batch-size) or image size${gpuFix}`);
        if (lostDevice.test(message)) throw new UserError(`the GPU device was lost while onnxruntime (${provider}) ran ${describe(options.label, batch)}: run again${gpuFix}`);
        throw new UserError(`onnxruntime (${provider}) failed on ${describe(options.label, batch)}: ${message}`);
      } finally {
        tensor.dispose();
      }
    },
    release: () => session.release(),
  };
}
