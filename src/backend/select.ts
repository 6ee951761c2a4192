/**
 * Backend choice, for a purpose. `auto` takes the first usable candidate of candidates.ts in their
 * order: for running a trained model (`infer`) onnxruntime's CUDA provider → tfjs-node-gpu →
 * onnxruntime's WebGPU → tfjs's webgpu (both on a hardware adapter only) → onnxruntime's CPU
 * provider → tfjs-node → wasm → cpu; for training (`train`, also what tfjs exports compute on) the
 * same without the inference-only onnxruntime candidates: tfjs-node-gpu → webgpu → tfjs-node →
 * wasm (XNNPACK, SIMD) → cpu (pure JS). The tfjs native packages and Dawn are optionalDependencies:
 * where npm could not install them osteo still runs, on onnxruntime's CPU provider and wasm. This
 * room alone imports a backend package; everything above src/backend/ asks for a preference and a
 * purpose and gets a selection.
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { diagnoseCuda, nodeCudaProbe } from './cuda.js';
import { diagnoseOnnxCuda, probeOnnxWebgpuInChild } from './onnx-probe.js';
import { onnxProviderLibrary } from './onnxruntime.js';
import { probeAdapterInChild, type AdapterProbe } from './webgpu.js';
import { UserError, errorMessage } from '../util/index.js';
import {
  backendCandidates,
  backendPreferences,
  candidateTrains,
  preferencesOf,
  type BackendCandidate,
  type BackendCapabilities,
  type BackendEnvironment,
  type BackendFaults,
  type BackendPreference,
  type BackendPurpose,
  type BackendRequest,
} from './candidates.js';

export interface CandidateStatus {
  candidate: string;
  package: string;
  /** true: usable; false: not usable (reason says why); null: not tried because an earlier one was chosen. */
  available: boolean | null;
  reason: string;
  /** what the candidate told about itself once prepared (a GPU adapter's name and limits) */
  details?: Record<string, string>;
}

/**
 * The chosen backend as the rooms above this one hold it: the command (or pipeline) that chose it
 * passes it down to every engine and step that computes, which never look up a current backend.
 * Code above this room reads `capabilities` and `faults`; `name` only travels (to worker threads,
 * into logs), it is never compared.
 */
export interface BackendHandle {
  /** the chosen candidate's --backend value (for a tfjs one, the tfjs backend it activates): what a worker thread asks useBackend for, and what logs show */
  readonly name: string;
  /** what was asked for (`auto`, or a backend name) */
  readonly preference: string;
  /** what the chosen candidate can do for training and inference */
  readonly capabilities: BackendCapabilities;
  /** how its own failures show (the candidate's `capabilities.faults`) */
  readonly faults: BackendFaults | undefined;
}

export interface BackendSelection extends BackendHandle {
  /** what the selection was made for (candidates.ts, BackendPurpose) */
  purpose: BackendPurpose;
  candidate: string;
  reason: string;
  candidates: CandidateStatus[];
}

/** A look at the machine that does not change while osteo runs, taken once (each is a child process). */
function once<T>(look: () => T): () => T {
  let seen: { value: T } | undefined;
  return () => (seen ??= { value: look() }).value;
}

/** Why onnxruntime's CUDA provider cannot run here (onnx-probe.ts), or null. */
function onnxCudaUnavailableReason(): string | null {
  let library: string;
  try {
    library = onnxProviderLibrary('cuda');
  } catch {
    return 'onnxruntime-node is not installed';
  }
  return diagnoseOnnxCuda(nodeCudaProbe, library, existsSync(library)).reason;
}

const webgpuAdapterOnce = once<AdapterProbe | undefined>(probeAdapterInChild);
const onnxWebgpuOnce = once(() => probeOnnxWebgpuInChild());
const onnxCudaOnce = once(onnxCudaUnavailableReason);

export const nodeEnvironment: BackendEnvironment = {
  importModule: (specifier) => import(specifier),
  // not only "is there a GPU": libtensorflow loads without its CUDA libraries and then runs on the CPU
  cudaUnavailableReason: () => diagnoseCuda(nodeCudaProbe).reason,
  webgpuAdapter: webgpuAdapterOnce,
  onnxProviderUnavailableReason: (provider) => (provider === 'cuda' ? onnxCudaOnce() : onnxWebgpuOnce()),
};

function isNotInstalled(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/**
 * How a candidate of each kind (candidates.ts) is made ready and current. A tfjs candidate's package
 * registers a tfjs backend, which becomes the thread's current one; an onnxruntime candidate has
 * nothing global to switch, and needs only a tfjs backend to build a model on for its graph and
 * weights (the host: whichever is current, else wasm, else cpu).
 */
interface Runtime {
  /** after prepare: null when the candidate can compute, else why not */
  ready(candidate: BackendCandidate): string | null;
  activate(candidate: BackendCandidate): Promise<boolean>;
  /** whether it computes in this thread as things are (a tfjs backend is per thread, and may have been switched since) */
  isActive(candidate: BackendCandidate): boolean;
}

const runtimes: Record<NonNullable<BackendCandidate['kind']>, Runtime> = {
  tfjs: {
    ready: (candidate) => (tf.findBackendFactory(candidate.backend) === null ? `the package loaded but registered no '${candidate.backend}' backend` : null),
    async activate(candidate) {
      const ok = await tf.setBackend(candidate.backend);
      if (ok) await candidate.activated?.();
      return ok;
    },
    isActive: (candidate) => tf.getBackend() === candidate.backend,
  },
  'onnx-sessions': {
    ready: () => null,
    async activate(candidate) {
      await ensureHostBackend();
      await candidate.activated?.();
      return true;
    },
    isActive: () => true,
  },
};

const runtimeOf = (candidate: BackendCandidate) => runtimes[candidate.kind ?? 'tfjs'];

/** A tfjs backend for the host work beside onnxruntime: the current one, else wasm, else cpu. */
async function ensureHostBackend(): Promise<void> {
  if (tf.engine().backendName) return;
  try {
    await useBackend('wasm', 'train');
  } catch {
    await useBackend('cpu', 'train');
  }
}

type Loaded = { status: CandidateStatus; activate?: () => Promise<boolean> };

async function load(candidate: BackendCandidate, env: BackendEnvironment, request: BackendRequest): Promise<Loaded> {
  const fail = (reason: string): Loaded => ({ status: { candidate: candidate.name, package: candidate.package, available: false, reason } });
  const skipped = candidate.probe?.(env, request);
  if (skipped) return fail(skipped);
  let module: unknown;
  try {
    module = await env.importModule(candidate.package);
  } catch (error) {
    if (isNotInstalled(error)) return fail(candidate.whyMissing ? `not installed (${candidate.whyMissing})` : 'not installed');
    return fail(`installed but failed to load: ${errorMessage(error).split('\n')[0]}`);
  }
  let unprepared: string | null | undefined;
  try {
    unprepared = await candidate.prepare?.(module, request);
  } catch (error) {
    unprepared = `installed but failed to prepare: ${errorMessage(error).split('\n')[0]}`;
  }
  if (unprepared) return fail(unprepared);
  const runtime = runtimeOf(candidate);
  const notReady = runtime.ready(candidate);
  if (notReady) return fail(notReady);
  const details = candidate.details?.(env);
  return {
    status: { candidate: candidate.name, package: candidate.package, available: true, reason: 'available', ...(details ? { details } : {}) },
    activate: () => runtime.activate(candidate),
  };
}

/**
 * The one check of a backend preference, wherever it comes from: `source` names that place (the
 * --backend flag, the OSTEO_BACKEND variable) in the error.
 */
export function parseBackendPreference(value: string, source = '--backend', choices: readonly string[] = backendPreferences): BackendPreference {
  if (choices.includes(value)) return value as BackendPreference;
  throw new UserError(`${source} '${value}' names no backend: choose one of ${choices.join(', ')}`);
}

/**
 * The --backend default from the environment: OSTEO_BACKEND, or undefined where it is unset or empty
 * (an empty assignment is how shells unset a variable for one command).
 */
export function backendFromEnvironment(env: Readonly<Record<string, string | undefined>> = process.env): BackendPreference | undefined {
  const value = env['OSTEO_BACKEND'];
  if (value === undefined || value === '') return undefined;
  return parseBackendPreference(value, 'OSTEO_BACKEND');
}

/** The selections made so far, by purpose and preference, with the environment they were made in. */
const selections = new Map<string, { env: BackendEnvironment; selection: BackendSelection; candidate: BackendCandidate }>();
/** The candidate behind each handle useBackend returned, for activateBackend. */
const chosenCandidates = new WeakMap<BackendHandle, BackendCandidate>();

/** Where a backend preference came from, as a user would set it again. */
export type PreferenceOrigin = 'flag' | 'environment';

/** Why this backend: the place the request came from (the --backend flag or OSTEO_BACKEND), or auto's order. */
export function reasonFor(preference: string, chosen: string, skipped: string[], origin: PreferenceOrigin = 'flag'): string {
  if (preference !== 'auto') return origin === 'environment' ? `requested with OSTEO_BACKEND=${preference}` : `requested with --backend ${preference}`;
  if (skipped.length === 0) return `${chosen} is the most capable backend available`;
  return `${chosen} is the first available after ${skipped.join(', ')} (see their reasons)`;
}

const asks = (candidate: BackendCandidate, preference: string) => preference === 'auto' || candidate.backend === preference || candidate.family === preference;

/**
 * The purpose a call means: the one it names, else `train` (the tfjs order) for auto and a tfjs
 * name, and `infer` for a name only inference-only candidates answer to.
 */
function purposeOf(preference: string, purpose: BackendPurpose | undefined, candidates: readonly BackendCandidate[]): BackendPurpose {
  if (purpose) return purpose;
  const asked = candidates.filter((c) => asks(c, preference));
  return preference !== 'auto' && asked.length > 0 && !asked.some(candidateTrains) ? 'infer' : 'train';
}

/** A preference no training candidate answers to, for training: what to use instead. */
function refuseTraining(preference: string, candidates: readonly BackendCandidate[]): UserError {
  const trainers = [...new Set(candidates.filter(candidateTrains).map((c) => c.backend))].join(', ');
  return new UserError(
    `backend '${preference}' runs trained models only (onnxruntime does not train in osteo): it cannot train, nor build the tfjs models that training and the tfjs exports compute on. ` +
      `Use --backend auto (it trains on the best tfjs backend and evaluates on the best inference backend, onnxruntime included) or one of ${trainers}`,
  );
}

/**
 * Pick and activate a backend for `purpose` (see purposeOf when it is left out). `auto` takes the
 * first usable candidate in order; a backend name tries the candidates that answer to it (its own,
 * or its family's: `onnxruntime` takes the first provider auto would). A preference that cannot be
 * met is a UserError naming what is missing and how to install it; an inference-only candidate asked
 * for training is a UserError saying what trains. Every candidate's status is recorded so `osteo
 * info` can say why each was skipped.
 */
export async function useBackend(preference: string = 'auto', purpose?: BackendPurpose, env: BackendEnvironment = nodeEnvironment): Promise<BackendSelection> {
  const all = env.candidates ?? backendCandidates;
  parseBackendPreference(preference, '--backend', preferencesOf(all));
  const effective = purposeOf(preference, purpose, all);
  const key = `${effective}\0${preference}`;
  const cached = selections.get(key);
  if (cached && cached.env === env && runtimeOf(cached.candidate).isActive(cached.candidate)) return cached.selection;
  const candidates = effective === 'train' ? all.filter(candidateTrains) : all;
  if (!candidates.some((c) => asks(c, preference))) throw refuseTraining(preference, all);
  const { chosen, reason, statuses } = await chooseCandidate(candidates, preference, env);
  const selection: BackendSelection = {
    name: chosen.backend,
    preference,
    purpose: effective,
    capabilities: chosen.capabilities,
    faults: chosen.capabilities.faults,
    candidate: chosen.name,
    reason,
    candidates: statuses,
  };
  selections.set(key, { env, selection, candidate: chosen });
  chosenCandidates.set(selection, chosen);
  return selection;
}

async function chooseCandidate(candidates: readonly BackendCandidate[], preference: string, env: BackendEnvironment): Promise<{ chosen: BackendCandidate; reason: string; statuses: CandidateStatus[] }> {
  const statuses: CandidateStatus[] = [];
  let chosen: BackendCandidate | undefined;
  let reason = '';
  for (const candidate of candidates) {
    if (chosen || !asks(candidate, preference)) {
      statuses.push({
        candidate: candidate.name,
        package: candidate.package,
        available: null,
        reason: chosen ? `not tried: ${chosen.name} was chosen first` : `not tried: --backend ${preference}`,
      });
      continue;
    }
    const loaded = await load(candidate, env, { requested: candidate.backend === preference });
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
        chosen = candidate;
        reason = reasonFor(preference, candidate.name, skipped);
      } else {
        loaded.status.available = false;
        loaded.status.reason = why;
      }
    }
    statuses.push(loaded.status);
  }
  if (!chosen) {
    const hints = new Map(candidates.map((c) => [c.name, c.installHint]));
    const details = statuses
      .filter((s) => s.available === false)
      .map((s) => `${s.package}: ${s.reason}; ${hints.get(s.candidate)}`)
      .join('\n  ');
    throw new UserError(`backend '${preference}' is not available:\n  ${details}`);
  }
  return { chosen, reason, statuses };
}

/** The two handles of a command that trains and evaluates (train with validation, reproduce, cv). */
export interface BackendPair {
  /** what the models train on (and tfjs exports compute on) */
  train: BackendSelection;
  /** what validation and evaluation run the trained models on */
  infer: BackendSelection;
}

/**
 * One preference, two purposes. `auto`: training on auto's training choice, inference on auto's
 * inference choice (onnxruntime where it runs). A named backend computes both (it must train); an
 * inference-only one is refused, with what to use.
 */
export async function useBackends(preference: string = 'auto', env: BackendEnvironment = nodeEnvironment): Promise<BackendPair> {
  const train = await useBackend(preference, 'train', env);
  const infer = preference === 'auto' ? await useBackend('auto', 'infer', env) : train;
  return { train, infer };
}

/**
 * Make `handle`'s backend the one that computes in this thread: for a tfjs backend, tfjs's current
 * one (tfjs holds one per thread), since another selection may have been activated since the handle
 * was chosen (tests switch between wasm and cpu); for onnxruntime, nothing to switch but a tfjs host
 * backend to build models on. An engine calls it before it builds a model; a no-op when it already is.
 */
export async function activateBackend(handle: BackendHandle): Promise<void> {
  // a handle copied or rebuilt from its name (a worker thread's) is found by that name
  const candidate: BackendCandidate | undefined = chosenCandidates.get(handle) ?? backendCandidates.find((c) => c.backend === handle.name);
  if (candidate && runtimeOf(candidate).isActive(candidate)) {
    if ((candidate.kind ?? 'tfjs') !== 'tfjs') await ensureHostBackend();
    return;
  }
  if (tf.getBackend() === handle.name) return;
  const selection = await useBackend(handle.name, 'train');
  if (selection.name !== handle.name) throw new Error(`activating backend ${handle.name} gave ${selection.name}`);
}
