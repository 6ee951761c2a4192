/**
 * Backend choice. `auto` takes the first usable candidate of candidates.ts, in their order of what
 * each can do for training: tfjs-node-gpu (CUDA) → webgpu (Dawn on a hardware Vulkan/Metal adapter)
 * → tfjs-node (libtensorflow on the CPU) → wasm (XNNPACK, SIMD) → cpu (pure JS). The first three are
 * optionalDependencies: where npm could not install them (no network to fetch libtensorflow, no
 * prebuilt Dawn) osteo still runs, on wasm. This room alone imports
 * a backend package; everything above src/backend/ asks for a preference and gets a selection.
 */
import * as tf from '@tensorflow/tfjs-core';
import { diagnoseCuda, nodeCudaProbe } from './cuda.js';
import { probeAdapterInChild } from './webgpu.js';
import { UserError, errorMessage } from '../util/index.js';
import {
  backendCandidates,
  backendPreferences,
  preferencesOf,
  type BackendCandidate,
  type BackendCapabilities,
  type BackendEnvironment,
  type BackendFaults,
  type BackendPreference,
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
  /** the tfjs backend it activates: what a worker thread asks useBackend for, and what logs show */
  readonly name: string;
  /** what was asked for (`auto`, or a backend name) */
  readonly preference: string;
  /** what the chosen candidate can do for training and inference */
  readonly capabilities: BackendCapabilities;
  /** how its own failures show (the candidate's `capabilities.faults`) */
  readonly faults: BackendFaults | undefined;
}

export interface BackendSelection extends BackendHandle {
  candidate: string;
  reason: string;
  candidates: CandidateStatus[];
}

export const nodeEnvironment: BackendEnvironment = {
  importModule: (specifier) => import(specifier),
  // not only "is there a GPU": libtensorflow loads without its CUDA libraries and then runs on the CPU
  cudaUnavailableReason: () => diagnoseCuda(nodeCudaProbe).reason,
  webgpuAdapter: probeAdapterInChild,
};

function isNotInstalled(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
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
  const name = candidate.backend;
  if (tf.findBackendFactory(name) === null) return fail(`the package loaded but registered no '${name}' backend`);
  const details = candidate.details?.();
  return {
    status: { candidate: candidate.name, package: candidate.package, available: true, reason: 'available', ...(details ? { details } : {}) },
    activate: async () => {
      const ok = await tf.setBackend(name);
      if (ok) await candidate.activated?.();
      return ok;
    },
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

let current: BackendSelection | undefined;
let currentEnvironment: BackendEnvironment | undefined;

/** Where a backend preference came from, as a user would set it again. */
export type PreferenceOrigin = 'flag' | 'environment';

/** Why this backend: the place the request came from (the --backend flag or OSTEO_BACKEND), or auto's order. */
export function reasonFor(preference: string, chosen: string, skipped: string[], origin: PreferenceOrigin = 'flag'): string {
  if (preference !== 'auto') return origin === 'environment' ? `requested with OSTEO_BACKEND=${preference}` : `requested with --backend ${preference}`;
  if (skipped.length === 0) return `${chosen} is the most capable backend available`;
  return `${chosen} is the first available after ${skipped.join(', ')} (see their reasons)`;
}

/**
 * Pick and activate a backend. `auto` takes the first usable candidate in order; a backend name tries
 * the candidates that register it. A preference that cannot be met is a UserError naming what is
 * missing and how to install it. Every candidate's status is recorded so `osteo info` can say why
 * each was skipped.
 */
export async function useBackend(preference: string = 'auto', env: BackendEnvironment = nodeEnvironment): Promise<BackendSelection> {
  if (current && currentEnvironment === env && current.preference === preference && tf.getBackend() === current.name) {
    return current;
  }
  const candidates = env.candidates ?? backendCandidates;
  const choices = preferencesOf(candidates);
  parseBackendPreference(preference, '--backend', choices);
  const statuses: CandidateStatus[] = [];
  let chosen: BackendCandidate | undefined;
  let reason = '';
  for (const candidate of candidates) {
    if (chosen || (preference !== 'auto' && candidate.backend !== preference)) {
      statuses.push({
        candidate: candidate.name,
        package: candidate.package,
        available: null,
        reason: chosen ? `not tried: ${chosen.name} was chosen first` : `not tried: --backend ${preference}`,
      });
      continue;
    }
    const loaded = await load(candidate, env, { requested: preference !== 'auto' });
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
  current = {
    name: chosen.backend,
    preference,
    capabilities: chosen.capabilities,
    faults: chosen.capabilities.faults,
    candidate: chosen.name,
    reason,
    candidates: statuses,
  };
  currentEnvironment = env;
  return current;
}

/**
 * Make `handle`'s backend the one tfjs computes on in this thread (tfjs holds one per thread): an
 * engine calls it before it builds a model, since another selection may have been activated since
 * the handle was chosen (tests switch between wasm and cpu). A no-op when it already is.
 */
export async function activateBackend(handle: BackendHandle): Promise<void> {
  if (tf.getBackend() === handle.name) return;
  const selection = await useBackend(handle.name);
  if (selection.name !== handle.name) throw new Error(`activating backend ${handle.name} gave ${selection.name}`);
}
