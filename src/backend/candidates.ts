/**
 * The backend candidates, one record each, most capable first: what `auto` tries in this order, the
 * package behind it, how to get it, how to make it ready, and what it can do for training and
 * inference. The tfjs records are here, the onnxruntime ones (inference only) in onnx-candidates.ts;
 * `backendCandidates` puts them in one order. Adding a backend is adding a record; select.ts and
 * everything above read the records and never a name.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { errorMessage } from '../util/index.js';
import { registerWasmTrainingKernels } from './kernels/index.js';
import type { OnnxModelLabel, OnnxProvider, OnnxSession } from './onnxruntime.js';
import { registerWebgpuTrainingKernels } from './kernels/webgpu/index.js';
import { onnxCpuCandidate, onnxCudaCandidate, onnxFamily, onnxWebgpuCandidate } from './onnx-candidates.js';
import {
  describeAdapter,
  describeWebgpuFault,
  judgeAdapter,
  prepareWebgpu,
  takeWebgpuFault,
  webgpuAdapter,
  type AdapterProbe,
  type AdapterSummary,
} from './webgpu.js';

/** What the selection needs from the outside world; tests inject their own to simulate machines. */
export interface BackendEnvironment {
  importModule(specifier: string): Promise<unknown>;
  /** null when a CUDA GPU looks usable, else the reason it does not. */
  cudaUnavailableReason(): string | null;
  /** Dawn's best adapter, looked at without loading Dawn here; undefined when the webgpu package is absent. */
  webgpuAdapter(): AdapterProbe | undefined;
  /**
   * null when onnxruntime's `provider` can run here (CUDA: its opt-in library, driver and CUDA 12
   * libraries; WebGPU: a one-node graph run in a child process), else why not. Absent: nothing is
   * known against it (onnxruntime itself then says).
   */
  onnxProviderUnavailableReason?(provider: 'cuda' | 'webgpu'): string | null;
  /** The candidates to choose among, most capable first (default: `backendCandidates`). */
  candidates?: readonly BackendCandidate[];
}

/** How a candidate is being asked for: by name (--backend webgpu) takes what `auto` would skip. */
export interface BackendRequest {
  requested: boolean;
}

/**
 * What the caller will do with the backend. `train`: the tfjs candidates only, in training order
 * (also what a tfjs export computes on); `infer`: every candidate, in the order of what each does for
 * running a trained model. Both orders are `backendCandidates`' order, training skipping the
 * candidates that do not train.
 */
export type BackendPurpose = 'train' | 'infer';

/**
 * How a candidate computes once chosen. `tfjs`: its package registers a tfjs backend, which becomes
 * the thread's current one. `onnx-sessions`: onnxruntime sessions built per model, with nothing global
 * to switch (tfjs is then only the host that builds a model for its graph and weights).
 */
export type CandidateKind = 'tfjs' | 'onnx-sessions';

/**
 * Data parallelism. A backend that trains in worker threads runs one instance of itself per thread
 * (`defaultCount` of them unless --workers says otherwise); one that does not already spreads a step
 * over the machine from one process, and `why` tells a user who asks for more workers.
 */
export type WorkerThreads = { trainsInWorkers: true; defaultCount(): number } | { trainsInWorkers: false; why: string };

/** A bound on what one forward/backward pass may hold, which caps the images per micro-batch. */
export interface ActivationMemory {
  budgetBytes: number;
  /** bytes the backend spends per float of layer output over a training pass (intermediates and gradients together) */
  bytesPerActivationFloat: number;
  /** the largest single tensor the backend can hold (a GPU adapter's storage-binding limit), when there is one */
  maxTensorBytes?: number;
}

/** How the backend's own failures show (memory exhausted, a lost device), to tell the user what happened and what to do. */
export interface BackendFaults {
  /** the fault as a phrase ("the wasm heap (4 GiB per worker) ran out"), or null when `error` is not one of this backend's */
  describe(error: unknown): string | null;
  /** a fault the backend reported on its own since the last call (a GPU reports errors asynchronously); checked after every pass */
  takePending?(): Error | undefined;
}

/**
 * The sessions of an onnxruntime execution provider. A candidate whose inference runs as ONNX graphs
 * carries one; the engine room builds its inference engine on it (and never imports onnxruntime).
 */
export interface OnnxSessions {
  readonly provider: OnnxProvider;
  /** intra-op threads a session computes on unless asked for another count */
  defaultThreads(): number;
  /** A session of `model` (an ONNX graph's bytes) on this provider; failures are UserErrors naming `label`. */
  create(model: Uint8Array, options: { threads?: number; label: OnnxModelLabel }): Promise<OnnxSession>;
}

export interface BackendCapabilities {
  workerThreads: WorkerThreads;
  /** present where trained models run as ONNX graphs in onnxruntime (inference); absent: the tfjs engines */
  onnxSessions?: OnnxSessions;
  /** false: the candidate cannot train (auto passes over it for training, a named request for training is refused); default true */
  trains?: boolean;
  /** undefined: no bound osteo knows of (the backend's own allocator reports exhaustion) */
  activationMemory?: ActivationMemory;
  /** undefined: no failure is recognised and each surfaces as it is */
  faults?: BackendFaults;
}

export interface BackendCandidate {
  /** what `osteo info` lists */
  name: string;
  /** the --backend value that asks for this candidate; for a tfjs candidate, also the tfjs backend its package registers */
  backend: string;
  /** a --backend value shared with others (`onnxruntime`): it asks for the first of them auto would take */
  family?: string;
  /** default `tfjs` */
  kind?: CandidateKind;
  package: string;
  /** how to get the package when it is missing or broken */
  installHint: string;
  /** why the package may legitimately be absent, added to "not installed" */
  whyMissing?: string;
  /** Before importing: null when the candidate is worth trying, else why it is skipped (without loading a large package). */
  probe?(env: BackendEnvironment, request: BackendRequest): string | null;
  /** After importing, before activating: null when ready, else why it cannot run. */
  prepare?(module: unknown, request: BackendRequest): string | null | Promise<string | null>;
  /** Once it is the active backend. */
  activated?(): void | Promise<void>;
  /** Facts `osteo info` lists under the candidate once it is prepared (a GPU adapter's name and limits). */
  details?(env: BackendEnvironment): Record<string, string> | undefined;
  capabilities: BackendCapabilities;
}

const require = createRequire(import.meta.url);

/** Directory holding the wasm binaries, found by path so that nothing is fetched over a network. */
export function wasmBinaryDirectory(): string {
  return dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
}

function prepareWasm(module: unknown): string | null {
  if (typeof WebAssembly !== 'object') return 'this JavaScript runtime has no WebAssembly';
  let directory: string;
  try {
    directory = wasmBinaryDirectory();
  } catch (error) {
    return `wasm binaries not found: ${errorMessage(error)}`;
  }
  if (!existsSync(join(directory, 'tfjs-backend-wasm-simd.wasm'))) return `wasm binaries missing in ${directory}`;
  (module as { setWasmPaths?: (prefix: string) => void }).setWasmPaths?.(directory + '/');
  return null;
}

/**
 * WebGPU exposes no memory size. NVIDIA's driver tells it (nvidia-smi); elsewhere 4 GiB, the smallest
 * GPU memory a training machine plausibly has. Half of it for activations: tfjs's buffer pool holds
 * freed buffers for reuse, and weights, gradients and their staging copies need the rest.
 */
function gpuMemoryBytes(): number {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    const mib = Number.parseInt(out.split('\n')[0]!.trim(), 10);
    if (mib > 0) return mib * 1024 ** 2;
  } catch {
    // no NVIDIA driver: the default below
  }
  return 4 * 1024 ** 3;
}

/**
 * tfjs-backend-webgpu keeps every forward intermediate and every gradient until the backward pass
 * ends, as wasm does: tf.profile's peak over a step matched wasm's within 3% (ResNet18 64² ×4: 127.4
 * vs 123.3 MB; EfficientNet-B3 64² ×2: 228.4 vs 226.9 MB, on lavapipe). wasm needs 12–17 bytes per
 * activation float at full size; 24 leaves room for the buffers tfjs's pool holds for reuse. The
 * adapter's storage-binding limit caps the largest single tensor.
 */
function webgpuActivationMemory(adapter: AdapterSummary | undefined): ActivationMemory | undefined {
  if (!adapter) return undefined;
  return { budgetBytes: gpuMemoryBytes() / 2, bytesPerActivationFloat: 24, maxTensorBytes: adapter.maxStorageBufferBindingSize || undefined };
}

const libtensorflowIsOptional = 'an optional dependency: npm skips it when its install cannot download libtensorflow';
const reinstall = 'reinstall the project dependencies with `npm ci`';

/**
 * Measured wasm heap high-water marks per float of layer output (whole heap ÷ activation floats,
 * BatchNorm as the fused op that keeps only its input): ResNet50 224² 12.0 B at 4 images, 13.2 B at
 * 3; EfficientNet-B3 300² 14.9 B at 2 images, 16.8 B at 1 (BENCHMARKS.md). tfjs keeps every forward
 * intermediate and every gradient until the backward pass ends; 18 leaves room for fragmentation.
 * 3 GiB of the 4 GiB heap: weights, the optimizer-free replica and XNNPACK's packed copies need the rest.
 */
const wasmActivationMemory: ActivationMemory = { budgetBytes: 3 * 1024 ** 3, bytesPerActivationFloat: 18 };

/** The tfjs candidates in the order of what each can do for training. */
export const tfjsCandidates = [
  {
    name: 'tfjs-node-gpu',
    backend: 'tensorflow',
    package: '@tensorflow/tfjs-node-gpu',
    installHint:
      'it needs an NVIDIA GPU with CUDA 11.2 and cuDNN 8.1, and `npm install @tensorflow/tfjs-node-gpu@4.22.0` with network access (its install downloads libtensorflow)',
    whyMissing: libtensorflowIsOptional,
    // importing the package without a driver fails slowly and noisily inside libtensorflow
    probe(env: BackendEnvironment) {
      const noCuda = env.cudaUnavailableReason();
      return noCuda === null ? null : `skipped: ${noCuda}`;
    },
    capabilities: { workerThreads: { trainsInWorkers: false, why: 'tfjs-node-gpu runs every step on the GPU from one process' } },
  },
  {
    name: 'webgpu',
    backend: 'webgpu',
    package: 'webgpu',
    installHint:
      '`npm install webgpu@0.6.2` (prebuilt Dawn for linux x64/arm64, win32, darwin) and a Vulkan driver (Linux, Windows) or macOS; a software Vulkan driver for tests: mesa-vulkan-drivers 24 or later',
    whyMissing: 'an optional dependency: npm skips it where Dawn has no prebuilt binary',
    // auto looks at the adapter from a child process first (see probeAdapterInChild); a named request loads it regardless
    probe(env: BackendEnvironment, request: BackendRequest) {
      if (request.requested) return null;
      const adapter = env.webgpuAdapter();
      return adapter === undefined ? null : judgeAdapter(adapter);
    },
    prepare: (module: unknown, request: BackendRequest) => prepareWebgpu(module, request.requested),
    activated: registerWebgpuTrainingKernels,
    details() {
      const adapter = webgpuAdapter();
      return adapter && describeAdapter(adapter);
    },
    capabilities: {
      workerThreads: { trainsInWorkers: false, why: 'WebGPU runs every step on one GPU device from one process' },
      get activationMemory() {
        return webgpuActivationMemory(webgpuAdapter());
      },
      faults: { describe: describeWebgpuFault, takePending: takeWebgpuFault },
    },
  },
  {
    name: 'tfjs-node',
    backend: 'tensorflow',
    package: '@tensorflow/tfjs-node',
    installHint: '`npm install @tensorflow/tfjs-node@4.22.0` needs network access: its install script downloads libtensorflow',
    whyMissing: libtensorflowIsOptional,
    capabilities: { workerThreads: { trainsInWorkers: false, why: 'tfjs-node already uses every core in one process' } },
  },
  {
    name: 'wasm',
    backend: 'wasm',
    package: '@tensorflow/tfjs-backend-wasm',
    installHint: reinstall,
    prepare: prepareWasm,
    // tfjs-backend-wasm lacks the training kernels osteo needs, or has slow ones
    activated: registerWasmTrainingKernels,
    capabilities: {
      // one wasm instance computes on one core
      workerThreads: { trainsInWorkers: true, defaultCount: () => availableParallelism() },
      activationMemory: wasmActivationMemory,
      faults: {
        // emscripten's abort() is how a heap past 4 GiB shows; the instance is unusable afterwards
        describe: (error: unknown) => (/Aborted\(|out of memory/i.test(errorMessage(error)) ? 'the wasm heap (4 GiB per worker) ran out' : null),
      },
    },
  },
  {
    name: 'cpu',
    backend: 'cpu',
    package: '@tensorflow/tfjs-backend-cpu',
    installHint: reinstall,
    capabilities: {
      // one thread unless asked: it is the reference the others are checked against, and the
      // micro-batches (hence BatchNorm statistics) then do not depend on the machine's core count
      workerThreads: { trainsInWorkers: true, defaultCount: () => 1 },
    },
  },
] as const satisfies readonly BackendCandidate[];

const [tfjsNodeGpu, tfjsWebgpu, tfjsNode, tfjsWasm, tfjsCpu] = tfjsCandidates;

/**
 * Every candidate, in auto's order for running a trained model: a hardware GPU (CUDA: onnxruntime's
 * provider, then tfjs-node-gpu; WebGPU on a hardware adapter: onnxruntime's, then tfjs's), then the
 * best native CPU engine (onnxruntime's MLAS, then libtensorflow), then wasm, then cpu. Without the
 * inference-only onnxruntime ones this is the tfjs training order, unchanged.
 */
export const backendCandidates = [onnxCudaCandidate, tfjsNodeGpu, onnxWebgpuCandidate, tfjsWebgpu, onnxCpuCandidate, tfjsNode, tfjsWasm, tfjsCpu] as const satisfies readonly BackendCandidate[];

/** The backends osteo can run on, and the families (`onnxruntime`) that name the best of several; with 'auto' these are the --backend choices. */
export type BackendName = (typeof backendCandidates)[number]['backend'] | typeof onnxFamily;
export type BackendPreference = 'auto' | BackendName;

/** Whether the candidate trains (the onnxruntime ones run trained models only). */
export function candidateTrains(candidate: BackendCandidate): boolean {
  return candidate.capabilities.trains !== false;
}

/** 'auto', the backends that train (in candidate order), then each family and the backends of the inference-only candidates. */
export function preferencesOf(candidates: readonly BackendCandidate[]): string[] {
  const rest = candidates.filter((c) => !candidateTrains(c)).flatMap((c) => (c.family ? [c.family, c.backend] : [c.backend]));
  return ['auto', ...new Set([...candidates.filter(candidateTrains).map((c) => c.backend), ...rest])];
}

/** The --backend choices, as the non-empty tuple zod's enum and commander's choices take. */
export const backendPreferences = preferencesOf(backendCandidates) as [BackendPreference, ...BackendPreference[]];

/** The backends that train in worker threads, as a phrase ("wasm and cpu"). */
export function workerThreadBackends(candidates: readonly BackendCandidate[] = backendCandidates): string {
  const names = new Set(candidates.filter((c) => c.capabilities.workerThreads.trainsInWorkers).map((c) => c.backend));
  return new Intl.ListFormat('en', { type: 'conjunction' }).format(names);
}
