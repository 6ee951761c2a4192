import { availableParallelism, cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { osteoVersion } from '../util/index.js';
import type { BackendPreference } from './candidates.js';
import { diagnoseCuda, formatCudaDiagnosis, nodeCudaProbe, type CudaDiagnosis } from './cuda.js';
import { reasonFor, type BackendSelection, type CandidateStatus, type PreferenceOrigin, useBackend } from './select.js';

export interface EnvironmentInfo {
  osteoVersion: string;
  tfjsVersion: string;
  node: string;
  platform: string;
  cpuCores: number;
  cpuModel: string;
  backend: BackendSelection['name'];
  candidate: BackendSelection['candidate'];
  reason: string;
  candidates: CandidateStatus[];
  wasmSimd: boolean;
  /** Why tfjs-node-gpu cannot use this machine's NVIDIA GPU: present only where nvidia-smi lists one and tfjs-node-gpu is not in use. */
  cuda?: CudaDiagnosis;
}

/** Smallest module using a SIMD instruction (v128.const + drop): validates only where wasm SIMD exists. */
const simdProbe = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 23, 1, 21, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 26, 11,
]);

export function wasmSimdSupported(): boolean {
  return typeof WebAssembly === 'object' && WebAssembly.validate(simdProbe);
}

/**
 * What `osteo info` reports: versions, the backend chosen and why, each candidate's status. `origin`
 * says where a named preference came from, so the reason names the flag or variable the user set.
 */
export async function environmentInfo(preference: BackendPreference = 'auto', origin: PreferenceOrigin = 'flag'): Promise<EnvironmentInfo> {
  const selection = await useBackend(preference);
  const skipped = selection.candidates.filter((s) => s.available === false).map((s) => s.candidate);
  return {
    osteoVersion,
    tfjsVersion: tf.version_core,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuCores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    backend: selection.name,
    candidate: selection.candidate,
    reason: reasonFor(selection.preference, selection.candidate, skipped, origin),
    candidates: selection.candidates,
    wasmSimd: wasmSimdSupported(),
    ...cudaFacts(selection),
  };
}

/** The CUDA diagnosis where there is an NVIDIA GPU that tfjs-node-gpu is not using. */
function cudaFacts(selection: BackendSelection): { cuda?: CudaDiagnosis } {
  if (selection.candidate === 'tfjs-node-gpu') return {};
  const cuda = diagnoseCuda(nodeCudaProbe);
  return cuda.gpus.length > 0 ? { cuda } : {};
}

export function formatEnvironmentInfo(info: EnvironmentInfo): string {
  const mark = (s: CandidateStatus) => (s.available === true ? 'yes' : s.available === false ? 'no ' : ' - ');
  const lines = [
    `osteo ${info.osteoVersion}  (tfjs ${info.tfjsVersion}, node ${info.node}, ${info.platform})`,
    `CPU: ${info.cpuCores} cores, ${info.cpuModel}; wasm SIMD: ${info.wasmSimd ? 'yes' : 'no'}`,
    `backend: ${info.backend} (${info.candidate}) — ${info.reason}`,
    'candidates:',
    ...info.candidates.flatMap((s) => [
      `  ${mark(s)} ${s.candidate.padEnd(14)} ${s.reason}`,
      ...Object.entries(s.details ?? {}).map(([key, value]) => `${' '.repeat(20)}${key}: ${value}`),
    ]),
    ...(info.cuda ? formatCudaDiagnosis(info.cuda) : []),
  ];
  return lines.join('\n');
}
