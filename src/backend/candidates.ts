/**
 * The backend candidates, one record each, most capable first: what `auto` tries in this order, the
 * package behind it, how to get it, how to make it ready, and what it can do for training. Adding a
 * backend is adding a record here; select.ts and everything above read the records and never a name.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { errorMessage } from '../util/index.js';
import { registerWasmTrainingKernels } from './kernels/index.js';

/** What the selection needs from the outside world; tests inject their own to simulate machines. */
export interface BackendEnvironment {
  importModule(specifier: string): Promise<unknown>;
  /** null when a CUDA GPU looks usable, else the reason it does not. */
  cudaUnavailableReason(): string | null;
  /** The candidates to choose among, most capable first (default: `backendCandidates`). */
  candidates?: readonly BackendCandidate[];
}

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
}

/** How the backend's out-of-memory failure shows, and the memory to name when telling the user. */
export interface OutOfMemory {
  memory: string;
  matches(error: unknown): boolean;
}

export interface BackendCapabilities {
  workerThreads: WorkerThreads;
  /** undefined: no bound osteo knows of (the backend's own allocator reports exhaustion) */
  activationMemory?: ActivationMemory;
  /** undefined: the failure is not recognised and surfaces as it is */
  outOfMemory?: OutOfMemory;
}

export interface BackendCandidate {
  /** what `osteo info` lists */
  name: string;
  /** the tfjs backend the package registers; it is also the --backend value that asks for this candidate */
  backend: string;
  package: string;
  /** how to get the package when it is missing or broken */
  installHint: string;
  /** why the package may legitimately be absent, added to "not installed" */
  whyMissing?: string;
  /** Before importing: null when the candidate is worth trying, else why it is skipped (without loading a large package). */
  probe?(env: BackendEnvironment): string | null;
  /** After importing, before activating: null when ready, else why it cannot run. */
  prepare?(module: unknown): string | null;
  /** Once it is the active backend. */
  activated?(): void | Promise<void>;
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

export const backendCandidates = [
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
      outOfMemory: {
        memory: 'the wasm heap (4 GiB per worker)',
        // emscripten's abort() is how a heap past 4 GiB shows; the instance is unusable afterwards
        matches: (error: unknown) => /Aborted\(|out of memory/i.test(errorMessage(error)),
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

/** The tfjs backends osteo can run on; with 'auto' these are the --backend choices. */
export type BackendName = (typeof backendCandidates)[number]['backend'];
export type BackendPreference = 'auto' | BackendName;

/** 'auto' and every candidate's backend, in candidate order. */
export function preferencesOf(candidates: readonly BackendCandidate[]): string[] {
  return ['auto', ...new Set(candidates.map((c) => c.backend))];
}

/** The --backend choices, as the non-empty tuple zod's enum and commander's choices take. */
export const backendPreferences = preferencesOf(backendCandidates) as [BackendPreference, ...BackendPreference[]];

/** The backends that train in worker threads, as a phrase ("wasm and cpu"). */
export function workerThreadBackends(candidates: readonly BackendCandidate[] = backendCandidates): string {
  const names = new Set(candidates.filter((c) => c.capabilities.workerThreads.trainsInWorkers).map((c) => c.backend));
  return new Intl.ListFormat('en', { type: 'conjunction' }).format(names);
}
