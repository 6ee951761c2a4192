import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { errorMessage, osteoVersion } from '../util/index.js';
import type { BackendEnvironment, BackendPreference } from './candidates.js';
import { diagnoseCuda, formatCudaDiagnosis, nodeCudaProbe, type CudaDiagnosis, type CudaProbe } from './cuda.js';
import { diagnoseOnnxCuda } from './onnx-probe.js';
import { listOnnxProviders, onnxruntime, type OnnxRuntimeLoader } from './onnxruntime.js';
import { nodeEnvironment, reasonFor, type BackendSelection, type CandidateStatus, type PreferenceOrigin, useBackend } from './select.js';
import { describeAdapter } from './webgpu.js';

/** One onnxruntime execution provider as `osteo info` lists it. */
export interface OnnxProviderInfo {
  name: string;
  /** shipped in the npm package (cpu, webgpu), or an opt-in download (cuda, tensorrt) */
  bundled: boolean;
  installed: boolean;
  /** whether osteo can run sessions on it here */
  usable: boolean;
  /** 'usable', or why not */
  reason: string;
  /** the intra-op threads a session takes by default */
  threads?: number;
  /** WebGPU: the adapter (as the webgpu package's Dawn sees it, the same driver) */
  adapter?: Record<string, string>;
  /** CUDA: the CUDA 12 / cuDNN 9 libraries the loader would not find */
  missingLibraries?: string[];
  /** a provider that is not bundled: where its library goes */
  library?: string;
}

export type OnnxRuntimeInfo = { version: string; providers: OnnxProviderInfo[] } | { version: string; error: string };

/** What the onnxruntime listing looks at; tests replace each part to simulate a machine. */
export interface OnnxInfoSources {
  runtime?: OnnxRuntimeLoader;
  env?: BackendEnvironment;
  cudaProbe?: CudaProbe;
  /** whether a provider library is where the install script puts it (default: it exists) */
  installed?(library: string): boolean;
}

function onnxVersion(): string {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** Each provider of this onnxruntime build: bundled or installed, usable or why not, its threads, WebGPU's adapter, CUDA's missing libraries. */
export async function onnxRuntimeInfo(sources: OnnxInfoSources = {}): Promise<OnnxRuntimeInfo> {
  const version = onnxVersion();
  const env = sources.env ?? nodeEnvironment;
  const installed = sources.installed ?? existsSync;
  let listed;
  try {
    listed = await listOnnxProviders(sources.runtime ?? onnxruntime);
  } catch (error) {
    return { version, error: errorMessage(error) };
  }
  const providers = listed.map((status): OnnxProviderInfo => {
    const base = { name: status.name, bundled: status.bundled, installed: status.bundled || (status.library !== undefined && installed(status.library)), ...(status.library ? { library: status.library } : {}) };
    if (status.name === 'cpu') return { ...base, usable: true, reason: 'usable', threads: availableParallelism() };
    if (status.name === 'webgpu') {
      const reason = base.installed ? env.onnxProviderUnavailableReason?.('webgpu') ?? null : 'not installed';
      const adapter = env.webgpuAdapter();
      return { ...base, usable: reason === null, reason: reason ?? 'usable', threads: 1, ...(adapter && 'summary' in adapter ? { adapter: describeAdapter(adapter.summary) } : {}) };
    }
    if (status.name === 'cuda') {
      const cuda = diagnoseOnnxCuda(sources.cudaProbe ?? nodeCudaProbe, status.library ?? 'libonnxruntime_providers_cuda.so', base.installed);
      return { ...base, usable: cuda.reason === null, reason: cuda.reason ?? 'usable', threads: 1, missingLibraries: cuda.missingLibraries };
    }
    return { ...base, usable: false, reason: 'osteo does not use it' };
  });
  return { version, providers };
}

export interface EnvironmentInfo {
  osteoVersion: string;
  tfjsVersion: string;
  node: string;
  platform: string;
  cpuCores: number;
  cpuModel: string;
  /** the backend that runs trained models (eval, predict, validation), and why */
  backend: BackendSelection['name'];
  candidate: BackendSelection['candidate'];
  reason: string;
  /** every candidate, in auto's order for inference */
  candidates: CandidateStatus[];
  /** the backend that trains (and computes tfjs exports), or why the preference cannot train */
  training: { backend: string; candidate: string; reason: string } | { unavailable: string };
  onnxruntime: OnnxRuntimeInfo;
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
  const selection = await useBackend(preference, 'infer');
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
    training: await trainingFacts(preference, origin),
    onnxruntime: await onnxRuntimeInfo(),
    wasmSimd: wasmSimdSupported(),
    ...cudaFacts(selection),
  };
}

async function trainingFacts(preference: BackendPreference, origin: PreferenceOrigin): Promise<EnvironmentInfo['training']> {
  try {
    const training = await useBackend(preference, 'train');
    const skipped = training.candidates.filter((s) => s.available === false).map((s) => s.candidate);
    return { backend: training.name, candidate: training.candidate, reason: reasonFor(training.preference, training.candidate, skipped, origin) };
  } catch (error) {
    return { unavailable: errorMessage(error).split('\n')[0]! };
  }
}

/** The lines `osteo info` prints for onnxruntime's providers. */
export function formatOnnxRuntimeInfo(info: OnnxRuntimeInfo): string[] {
  if ('error' in info) return [`onnxruntime ${info.version}: ${info.error}`];
  return [
    `onnxruntime ${info.version} execution providers:`,
    ...info.providers.flatMap((p) => [
      `  ${p.usable ? 'yes' : 'no '} ${p.name.padEnd(9)} ${p.bundled ? 'bundled' : p.installed ? 'installed' : 'not installed'}; ${p.reason}${p.threads === undefined || !p.usable ? '' : `; ${p.threads} thread${p.threads === 1 ? '' : 's'}`}`,
      ...Object.entries(p.adapter ?? {}).map(([key, value]) => `${' '.repeat(16)}${key}: ${value}`),
      ...(p.missingLibraries && p.missingLibraries.length > 0 ? [`${' '.repeat(16)}missing: ${p.missingLibraries.join(', ')}`] : []),
    ]),
  ];
}

/** The CUDA diagnosis where there is an NVIDIA GPU that tfjs-node-gpu is not using. */
function cudaFacts(selection: BackendSelection): { cuda?: CudaDiagnosis } {
  if (selection.candidate === 'tfjs-node-gpu' || selection.candidate === 'onnxruntime-cuda') return {};
  const cuda = diagnoseCuda(nodeCudaProbe);
  return cuda.gpus.length > 0 ? { cuda } : {};
}

export function formatEnvironmentInfo(info: EnvironmentInfo): string {
  const mark = (s: CandidateStatus) => (s.available === true ? 'yes' : s.available === false ? 'no ' : ' - ');
  const lines = [
    `osteo ${info.osteoVersion}  (tfjs ${info.tfjsVersion}, node ${info.node}, ${info.platform})`,
    `CPU: ${info.cpuCores} cores, ${info.cpuModel}; wasm SIMD: ${info.wasmSimd ? 'yes' : 'no'}`,
    `inference: ${info.backend} (${info.candidate}) — ${info.reason}`,
    'unavailable' in info.training
      ? `training:  ${info.training.unavailable}`
      : `training:  ${info.training.backend} (${info.training.candidate}) — ${info.training.reason}`,
    "candidates (auto's order for inference; training takes the ones that train, in the same order):",
    ...info.candidates.flatMap((s) => [
      `  ${mark(s)} ${s.candidate.padEnd(18)} ${s.reason}`,
      ...Object.entries(s.details ?? {}).map(([key, value]) => `${' '.repeat(24)}${key}: ${value}`),
    ]),
    ...formatOnnxRuntimeInfo(info.onnxruntime),
    ...(info.cuda ? formatCudaDiagnosis(info.cuda) : []),
  ];
  return lines.join('\n');
}
