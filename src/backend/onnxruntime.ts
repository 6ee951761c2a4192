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
let loaded: Promise<Ort> | undefined;

function onnxruntime(): Promise<Ort> {
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
function binaryFolder(): string {
  const packageJson = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(dirname(packageJson), 'bin', 'napi-v6', process.platform, process.arch);
}

function providerLibrary(name: string): string {
  const file = process.platform === 'win32' ? `onnxruntime_providers_${name}.dll` : `libonnxruntime_providers_${name}.so`;
  return join(binaryFolder(), file);
}

/**
 * The execution providers this onnxruntime-node build knows. The package lists `cuda` and `tensorrt`
 * whether or not their libraries were downloaded, so a provider that is not bundled counts as
 * installed only when its library is present.
 */
export async function listOnnxProviders(): Promise<OnnxProviderStatus[]> {
  const ort = await onnxruntime();
  return ort.listSupportedBackends().map((backend) => {
    if (backend.bundled) return { name: backend.name, bundled: true, installed: true };
    const library = providerLibrary(backend.name);
    return { name: backend.name, bundled: false, installed: existsSync(library), library };
  });
}

/** What a session runs, for error messages: "resnet18 at 224 px". */
export interface OnnxModelLabel {
  model: string;
  imageSize: number;
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
const lostDevice = /device (was )?lost|DeviceLost/i;

function describe(label: OnnxModelLabel, batch?: number): string {
  return `${label.model} at ${label.imageSize} px${batch === undefined ? '' : `, batch ${batch}`}`;
}

/** Builds a session; a provider this build lacks, or a graph it refuses, is a UserError naming the model. */
export async function createOnnxSession(model: Uint8Array, options: OnnxSessionOptions): Promise<OnnxSession> {
  const ort = await onnxruntime();
  const provider = options.provider ?? 'cpu';
  const providers = await listOnnxProviders();
  if (!providers.some((status) => status.name === provider && status.installed)) {
    const usable = providers.filter((status) => status.installed).map((status) => status.name);
    const hint = provider === 'cuda' ? ': install the CUDA 12 provider as docs/onnx.md describes' : '';
    throw new UserError(`onnxruntime has no '${provider}' execution provider here (it has ${usable.join(', ')})${hint}`);
  }
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new UserError(`onnxruntime threads must be a positive integer, got ${threads}`);
  let session: import('onnxruntime-node').InferenceSession;
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
    const fix = outOfMemory.test(message) ? 'free memory or use a smaller model or image size' : 'the .onnx file may be damaged or not an osteo export: export it again';
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
        if (outOfMemory.test(message)) throw new UserError(`onnxruntime (${provider}) ran out of memory on ${describe(options.label, batch)}: use a smaller batch (--batch-size) or image size`);
        if (lostDevice.test(message)) throw new UserError(`the GPU device was lost while onnxruntime (${provider}) ran ${describe(options.label, batch)}: run again, or choose the cpu provider`);
        throw new UserError(`onnxruntime (${provider}) failed on ${describe(options.label, batch)}: ${message}`);
      } finally {
        tensor.dispose();
      }
    },
    release: () => session.release(),
  };
}
