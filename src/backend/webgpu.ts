/**
 * The WebGPU candidate: @tensorflow/tfjs-backend-webgpu on Dawn's Node binding (the `webgpu` npm
 * package, Vulkan on Linux and Windows, Metal on macOS). osteo chooses the adapter itself — a
 * hardware one for `auto`, any one (lavapipe, SwiftShader included) when --backend webgpu asks — and
 * creates the device itself, so that it can report the adapter in `osteo info`, cap a micro-batch by
 * the adapter's binding limit, and turn a lost device or a GPU out-of-memory error into a message.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { errorMessage } from '../util/index.js';

const require = createRequire(import.meta.url);

/** The parts of the WebGPU API used here (the `webgpu` package's own types need a DOM-like global scope). */
interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface GpuLimits {
  readonly [name: string]: number;
}
interface GpuError {
  readonly message: string;
  readonly constructor: { readonly name: string };
}
interface GpuDevice {
  readonly lost: Promise<{ reason: string; message: string }>;
  addEventListener(type: 'uncapturederror', listener: (event: { error: GpuError }) => void): void;
  destroy(): void;
}
interface GpuAdapter {
  readonly info: GpuAdapterInfo;
  readonly limits: GpuLimits;
  readonly isFallbackAdapter?: boolean;
  requestDevice(descriptor: { requiredLimits: Record<string, number> }): Promise<GpuDevice>;
}
interface Gpu {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapter | null>;
}
interface DawnModule {
  create(flags: string[]): Gpu;
  globals: Record<string, unknown>;
}
interface WebgpuBackendModule {
  WebGPUBackend: new (device: GpuDevice, adapterInfo: GpuAdapterInfo) => tf.KernelBackend;
}

/** What `osteo info` shows of the adapter, and what decides whether `auto` takes it. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** a CPU implementation of the API (lavapipe/llvmpipe, SwiftShader, WARP): correct, never fast */
  software: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** Adapters that compute on the CPU, by the names their drivers report. */
const softwareNames = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render|\bwarp\b/i;

export function summarizeAdapter(info: GpuAdapterInfo, limits: GpuLimits, isFallbackAdapter = false): AdapterSummary {
  const text = (value: string | undefined) => value ?? '';
  const names = [info.vendor, info.architecture, info.device, info.description].map(text).join(' ');
  return {
    vendor: text(info.vendor),
    architecture: text(info.architecture),
    device: text(info.device),
    description: text(info.description),
    software: isFallbackAdapter || info.isFallbackAdapter === true || softwareNames.test(names),
    maxBufferSize: limits['maxBufferSize'] ?? 0,
    maxStorageBufferBindingSize: limits['maxStorageBufferBindingSize'] ?? 0,
  };
}

/** What a look at the adapters found: the one `auto` would use, or why there is none. */
export type AdapterProbe = { summary: AdapterSummary } | { reason: string };

/**
 * Dawn's adapter as seen from a child process: `auto` looks before it loads anything, so that a broken
 * Vulkan driver that crashes on enumeration, or a software driver's warnings on stderr, never reach
 * an osteo command that ends up on another backend. undefined: the webgpu package is not installed.
 */
export function probeAdapterInChild(): AdapterProbe | undefined {
  let entry: string;
  try {
    entry = pathToFileURL(require.resolve('webgpu')).href;
  } catch {
    return undefined;
  }
  const code = `
    const dawn = await import(${JSON.stringify(entry)});
    const adapter = await dawn.create([]).requestAdapter({ powerPreference: 'high-performance' });
    const pick = (o, keys) => Object.fromEntries(keys.map((k) => [k, o[k]]));
    process.stdout.write(JSON.stringify(adapter === null ? null : {
      info: pick(adapter.info, ['vendor', 'architecture', 'device', 'description', 'isFallbackAdapter']),
      limits: pick(adapter.limits, ['maxBufferSize', 'maxStorageBufferBindingSize']),
      isFallbackAdapter: adapter.isFallbackAdapter === true,
    }));
    process.exit(0);`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 });
  if (child.error) return { reason: `the adapter probe could not run: ${child.error.message}` };
  if (child.status !== 0) {
    const why = child.signal ? `was killed by ${child.signal}` : `exited with code ${child.status}`;
    const said = firstLine(child.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('Warning:')).join('\n') || '');
    return { reason: `the adapter probe ${why} (a broken Vulkan/Metal driver?)${said ? `: ${said}` : ''}` };
  }
  const found = JSON.parse(child.stdout) as { info: GpuAdapterInfo; limits: GpuLimits; isFallbackAdapter: boolean } | null;
  if (found === null) return { reason: noAdapter() };
  return { summary: summarizeAdapter(found.info, found.limits, found.isFallbackAdapter) };
}

function noAdapter(): string {
  return process.platform === 'linux'
    ? "no WebGPU adapter: Dawn found no usable Vulkan device (a GPU needs its vendor's Vulkan driver; a software one needs mesa-vulkan-drivers 24 or later, from bookworm-backports on Debian 12)"
    : 'no WebGPU adapter: Dawn found no usable GPU';
}

/** `auto` takes a hardware adapter only: lavapipe or SwiftShader compute slower than wasm. `force`: the request that takes it anyway. */
export function judgeAdapter(probe: AdapterProbe, force = '--backend webgpu'): string | null {
  if ('reason' in probe) return probe.reason;
  if (probe.summary.software) return `skipped: the only adapter is a software one (${adapterName(probe.summary)}), slower than wasm; ${force} uses it anyway`;
  return null;
}

function adapterName(summary: AdapterSummary): string {
  return summary.description || `${summary.vendor} ${summary.device}`.trim() || 'unnamed adapter';
}

/** The limits tfjs-backend-webgpu asks for: the adapter's own, not WebGPU's small defaults. */
const requestedLimits = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
];

/** A failure the device reported on its own (WebGPU reports errors asynchronously, not by throwing). */
export class DeviceFault extends Error {
  constructor(
    /** the phrase the engine puts in its message to the user */
    readonly phrase: string,
  ) {
    super(phrase);
    this.name = 'DeviceFault';
  }
}

interface State {
  adapter: GpuAdapter;
  summary: AdapterSummary;
  device?: GpuDevice;
  /** the first fault since the last `takeFault` */
  fault?: DeviceFault;
  /** set once the device is gone: every later operation fails */
  lost?: DeviceFault;
}

let state: State | undefined;

/** The adapter chosen by the last successful preparation. */
export function webgpuAdapter(): AdapterSummary | undefined {
  return state?.summary;
}

function faultOf(error: GpuError): DeviceFault {
  const kind = error.constructor.name;
  if (kind === 'GPUOutOfMemoryError' || /out of memory/i.test(error.message)) return new DeviceFault(`the GPU ran out of memory (${firstLine(error.message)})`);
  return new DeviceFault(`the GPU rejected an operation (${kind}: ${firstLine(error.message)})`);
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.trim();
}

async function createDevice(s: State): Promise<GpuDevice> {
  const limits: Record<string, number> = {};
  for (const name of requestedLimits) if (typeof s.adapter.limits[name] === 'number') limits[name] = s.adapter.limits[name]!;
  const device = await s.adapter.requestDevice({ requiredLimits: limits });
  device.addEventListener('uncapturederror', (event) => {
    s.fault ??= faultOf(event.error);
  });
  // osteo never destroys its device, so any loss is a fault: a driver reset, a removed GPU, a hung queue
  void device.lost.then((info) => {
    if (s.device !== device) return;
    s.lost = new DeviceFault(`the GPU device was lost (${firstLine(info.message) || info.reason})`);
    s.fault ??= s.lost;
  });
  s.device = device;
  return device;
}

/**
 * After `import('webgpu')`: find an adapter, judge it, and register osteo's 'webgpu' factory.
 * `requested`: --backend webgpu asked for it by name, so a software adapter is accepted.
 * Returns null when ready, else why the candidate cannot run.
 */
export async function prepareWebgpu(module: unknown, requested: boolean): Promise<string | null> {
  const dawn = module as Partial<DawnModule>;
  if (typeof dawn.create !== 'function' || typeof dawn.globals !== 'object') return 'the webgpu package has no create() and globals: an unexpected version (osteo uses webgpu 0.6)';
  // tfjs-backend-webgpu reads the WebGPU enums (GPUBufferUsage, GPUMapMode, …) as globals, as in a browser
  Object.assign(globalThis, dawn.globals);
  let gpu: Gpu;
  let adapter: GpuAdapter | null;
  try {
    gpu = dawn.create([]);
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (error) {
    return `Dawn could not start: ${firstLine(errorMessage(error))}`;
  }
  if (!adapter) return noAdapter();
  const summary = summarizeAdapter(adapter.info, adapter.limits, adapter.isFallbackAdapter);
  const judged = requested ? null : judgeAdapter({ summary });
  if (judged) return judged;
  // tfjs-backend-webgpu checks navigator.gpu (Node 20 has no navigator; Node 21+ has one without gpu)
  const scope = globalThis as { navigator?: object };
  scope.navigator ??= {};
  Object.defineProperty(scope.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  let backendModule: WebgpuBackendModule;
  try {
    backendModule = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as WebgpuBackendModule;
  } catch (error) {
    return `@tensorflow/tfjs-backend-webgpu failed to load: ${firstLine(errorMessage(error))}`;
  }
  const s: State = { adapter, summary };
  state = s;
  // replace the package's own factory, which would pick an adapter of its own and watch nothing
  if (tf.findBackendFactory('webgpu') !== null) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => new backendModule.WebGPUBackend(await createDevice(s), adapter.info), 3);
  return null;
}

/** The adapter as `osteo info` lists it. */
export function describeAdapter(summary: AdapterSummary): Record<string, string> {
  const mib = (bytes: number) => `${Math.floor(bytes / 1024 ** 2)} MiB`;
  return {
    adapter: [summary.vendor, summary.architecture, summary.device].filter(Boolean).join(' / ') || 'unnamed',
    description: summary.description || '—',
    kind: summary.software ? 'software (runs on the CPU)' : 'hardware',
    maxBufferSize: mib(summary.maxBufferSize),
    maxStorageBufferBindingSize: mib(summary.maxStorageBufferBindingSize),
  };
}

/** The fault the device reported since the last call, if any (then forgotten, unless the device is lost for good). */
export function takeWebgpuFault(): DeviceFault | undefined {
  if (!state) return undefined;
  const fault = state.fault;
  state.fault = state.lost;
  return fault;
}

/** A fault to name for `error`: one the device reported, or an error that is one by its text. */
export function describeWebgpuFault(error: unknown): string | null {
  if (error instanceof DeviceFault) return error.phrase;
  const pending = state?.lost ?? state?.fault;
  if (pending) return pending.phrase;
  const text = errorMessage(error);
  if (/out of memory|GPUOutOfMemoryError/i.test(text)) return `the GPU ran out of memory (${firstLine(text)})`;
  if (/device (was |is )?lost|device.*destroyed/i.test(text)) return `the GPU device was lost (${firstLine(text)})`;
  return null;
}
