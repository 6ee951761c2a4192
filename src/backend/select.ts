/**
 * Backend choice. The order of preference is fixed by what each backend can do for training:
 * tfjs-node-gpu (CUDA) → tfjs-node (libtensorflow on the CPU) → wasm (XNNPACK, SIMD) → cpu (pure JS).
 * The first two are optionalDependencies: where npm could not install them (no network to fetch
 * libtensorflow, no CUDA) osteo still runs, on wasm. This is the only module that imports a
 * backend package; everything above src/backend/ asks for a preference and gets a selection.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { UserError, errorMessage } from '../util/index.js';
import { registerWasmTrainingKernels } from './kernels/index.js';

export const backendPreferences = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendPreference = (typeof backendPreferences)[number];

/** The four ways osteo can run, most capable first. */
export const candidateNames = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type CandidateName = (typeof candidateNames)[number];

/** The tfjs backend name each candidate registers. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
const backendOf: Record<CandidateName, BackendName> = {
  'tfjs-node-gpu': 'tensorflow',
  'tfjs-node': 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

const packageOf: Record<CandidateName, string> = {
  'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu',
  'tfjs-node': '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const installHint: Record<CandidateName, string> = {
  'tfjs-node-gpu':
    'it needs an NVIDIA GPU with CUDA 11.2 and cuDNN 8.1, and `npm install @tensorflow/tfjs-node-gpu@4.22.0` with network access (its install downloads libtensorflow)',
  'tfjs-node':
    '`npm install @tensorflow/tfjs-node@4.22.0` needs network access: its install script downloads libtensorflow',
  wasm: 'reinstall the project dependencies with `npm ci`',
  cpu: 'reinstall the project dependencies with `npm ci`',
};

export interface CandidateStatus {
  candidate: CandidateName;
  package: string;
  /** true: usable; false: not usable (reason says why); null: not tried because an earlier one was chosen. */
  available: boolean | null;
  reason: string;
}

export interface BackendSelection {
  preference: BackendPreference;
  candidate: CandidateName;
  backend: BackendName;
  reason: string;
  candidates: CandidateStatus[];
}

/** What the selection needs from the outside world; tests inject their own to simulate machines. */
export interface BackendEnvironment {
  importModule(specifier: string): Promise<unknown>;
  /** null when a CUDA GPU looks usable, else the reason it does not. */
  cudaUnavailableReason(): string | null;
}

const require = createRequire(import.meta.url);

export const nodeEnvironment: BackendEnvironment = {
  importModule: (specifier) => import(specifier),
  cudaUnavailableReason() {
    if (process.platform !== 'linux' && process.platform !== 'win32') return `no CUDA on ${process.platform}`;
    try {
      const gpus = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
      return /GPU \d+/.test(gpus) ? null : 'nvidia-smi lists no GPU';
    } catch {
      return 'no NVIDIA driver (nvidia-smi not found or failed)';
    }
  },
};

function isNotInstalled(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/** Directory holding the wasm binaries, found by path so that nothing is fetched over a network. */
export function wasmBinaryDirectory(): string {
  return dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'));
}

type Loaded = { status: CandidateStatus; activate?: () => Promise<boolean> };

async function load(candidate: CandidateName, env: BackendEnvironment): Promise<Loaded> {
  const pkg = packageOf[candidate];
  const fail = (reason: string): Loaded => ({ status: { candidate, package: pkg, available: false, reason } });
  if (candidate === 'tfjs-node-gpu') {
    const noCuda = env.cudaUnavailableReason();
    if (noCuda !== null) return fail(`skipped: ${noCuda}`);
  }
  let module: unknown;
  try {
    module = await env.importModule(pkg);
  } catch (error) {
    if (isNotInstalled(error)) {
      const why =
        candidate === 'tfjs-node' || candidate === 'tfjs-node-gpu'
          ? 'not installed (an optional dependency: npm skips it when its install cannot download libtensorflow)'
          : 'not installed';
      return fail(why);
    }
    return fail(`installed but failed to load: ${errorMessage(error).split('\n')[0]}`);
  }
  const name = backendOf[candidate];
  if (candidate === 'wasm') {
    const wasm = module as { setWasmPaths?: (prefix: string) => void };
    if (typeof WebAssembly !== 'object') return fail('this JavaScript runtime has no WebAssembly');
    let directory: string;
    try {
      directory = wasmBinaryDirectory();
    } catch (error) {
      return fail(`wasm binaries not found: ${errorMessage(error)}`);
    }
    if (!existsSync(join(directory, 'tfjs-backend-wasm-simd.wasm'))) return fail(`wasm binaries missing in ${directory}`);
    wasm.setWasmPaths?.(directory + '/');
  }
  if (tf.findBackendFactory(name) === null) return fail(`the package loaded but registered no '${name}' backend`);
  const reason = 'available';
  return {
    status: { candidate, package: pkg, available: true, reason },
    activate: async () => {
      const ok = await tf.setBackend(name);
      if (ok && name === 'wasm') await onWasmActivated();
      return ok;
    },
  };
}

/** Hooks run once the wasm backend is live (the training kernels it lacks are registered here). */
const wasmActivationHooks: Array<() => void | Promise<void>> = [registerWasmTrainingKernels];
export function onWasmActivation(hook: () => void | Promise<void>): void {
  wasmActivationHooks.push(hook);
}
async function onWasmActivated(): Promise<void> {
  for (const hook of wasmActivationHooks) await hook();
}

function candidatesFor(preference: BackendPreference): CandidateName[] {
  switch (preference) {
    case 'auto':
      return [...candidateNames];
    case 'tensorflow':
      return ['tfjs-node-gpu', 'tfjs-node'];
    case 'wasm':
      return ['wasm'];
    case 'cpu':
      return ['cpu'];
  }
}

export function parseBackendPreference(value: string): BackendPreference {
  if ((backendPreferences as readonly string[]).includes(value)) return value as BackendPreference;
  throw new UserError(`unknown backend '${value}': choose one of ${backendPreferences.join(', ')}`);
}

let current: BackendSelection | undefined;
let currentEnvironment: BackendEnvironment | undefined;

/**
 * Pick and activate a backend. `auto` takes the first usable candidate in order; an explicit
 * preference that cannot be met is a UserError naming what is missing and how to install it.
 * Every candidate's status is recorded so `osteo info` can say why each was skipped.
 */
export async function useBackend(
  preference: BackendPreference = 'auto',
  env: BackendEnvironment = nodeEnvironment,
): Promise<BackendSelection> {
  if (current && currentEnvironment === env && current.preference === preference && tf.getBackend() === current.backend) {
    return current;
  }
  const tried = candidatesFor(preference);
  const statuses: CandidateStatus[] = [];
  let chosen: { candidate: CandidateName; reason: string } | undefined;
  for (const candidate of candidateNames) {
    if (!tried.includes(candidate) || chosen) {
      statuses.push({
        candidate,
        package: packageOf[candidate],
        available: null,
        reason: chosen ? `not tried: ${chosen.candidate} was chosen first` : `not tried: --backend ${preference}`,
      });
      continue;
    }
    const loaded = await load(candidate, env);
    if (loaded.activate) {
      let ok = false;
      let why = 'initialisation failed';
      try {
        ok = await loaded.activate();
      } catch (error) {
        why = `initialisation failed: ${errorMessage(error)}`;
      }
      if (ok) {
        const skipped = statuses.filter((s) => s.available === false).map((s) => s.candidate);
        const reason =
          preference === 'auto'
            ? skipped.length === 0
              ? `${candidate} is the most capable backend available`
              : `${candidate} is the first available after ${skipped.join(', ')} (see their reasons)`
            : `requested with --backend ${preference}`;
        chosen = { candidate, reason };
        statuses.push(loaded.status);
        continue;
      }
      loaded.status.available = false;
      loaded.status.reason = why;
    }
    statuses.push(loaded.status);
  }
  if (!chosen) {
    const failures = statuses.filter((s) => s.available === false);
    const details = failures.map((s) => `${s.package}: ${s.reason}; ${installHint[s.candidate]}`).join('\n  ');
    throw new UserError(`backend '${preference}' is not available:\n  ${details}`);
  }
  current = {
    preference,
    candidate: chosen.candidate,
    backend: backendOf[chosen.candidate],
    reason: chosen.reason,
    candidates: statuses,
  };
  currentEnvironment = env;
  return current;
}

/** The selection made by the last useBackend call, if any. */
export function currentBackend(): BackendSelection | undefined {
  return current;
}
