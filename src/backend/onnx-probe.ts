/**
 * What decides whether an onnxruntime execution provider can run here, looked at without risking this
 * process: the CUDA 12 provider's libraries and driver (as the dynamic loader would find them), and
 * the WebGPU provider's Dawn, started in a child process on a one-node graph (a broken Vulkan driver
 * crashes the child, not osteo). onnxruntime reports nothing about the adapter its own Dawn picks,
 * so the adapter is judged through the `webgpu` package's Dawn (webgpu.ts): both ask the same Vulkan
 * (or Metal) driver for a high-performance adapter and get the same one.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import protobuf from 'protobufjs';
import { compareVersions, parseVersion, queryGpus, type CudaGpu, type CudaProbe } from './cuda.js';

/**
 * The part of onnx.proto a one-node float graph needs, with ONNX's field numbers. The full schema
 * lives with the ONNX writer in weights/, a room above this one; this probe only has to be a valid
 * model, which `onnxruntime` itself checks.
 */
const probeSchema = `
syntax = "proto2";
package onnx;
message TensorShapeProto { message Dimension { optional int64 dim_value = 1; } repeated Dimension dim = 1; }
message TypeProto { message Tensor { optional int32 elem_type = 1; optional TensorShapeProto shape = 2; } optional Tensor tensor_type = 1; }
message ValueInfoProto { optional string name = 1; optional TypeProto type = 2; }
message NodeProto { repeated string input = 1; repeated string output = 2; optional string op_type = 4; }
message GraphProto { repeated NodeProto node = 1; optional string name = 2; repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12; }
message OperatorSetIdProto { optional string domain = 1; optional int64 version = 2; }
message ModelProto { optional int64 ir_version = 1; optional GraphProto graph = 7; repeated OperatorSetIdProto opset_import = 8; }
`;

/** A graph of one Relu on a float [1, 4]: the least a provider must compile and run to show it works. */
export function probeGraph(): Uint8Array {
  const ModelProto = protobuf.parse(probeSchema, { keepCase: true }).root.lookupType('onnx.ModelProto');
  const value = (name: string) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 4 }] } } } });
  return ModelProto.encode(
    ModelProto.fromObject({
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: { name: 'probe', node: [{ op_type: 'Relu', input: ['x'], output: ['y'] }], input: [value('x')], output: [value('y')] },
    }),
  ).finish();
}

const firstLine = (text: string) => text.split('\n')[0]!.trim();

/**
 * Starts onnxruntime's WebGPU provider in a child process and runs the probe graph on it. null: it
 * computed Relu right; else why not (no adapter, a driver that crashed, a wrong result).
 */
export function probeOnnxWebgpuInChild(timeoutMs = 60_000): string | null {
  let entry: string;
  try {
    entry = pathToFileURL(createRequire(import.meta.url).resolve('onnxruntime-node')).href;
  } catch {
    return 'onnxruntime-node is not installed';
  }
  const code = `
    const { default: ort } = await import(${JSON.stringify(entry)});
    const model = Buffer.from(process.env.OSTEO_PROBE_GRAPH, 'base64');
    const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], logSeverityLevel: 3 });
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([-1, 2, -3, 4]), [1, 4]) });
    process.stdout.write(JSON.stringify(Array.from(out.y.data)));
    process.exit(0);`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, OSTEO_PROBE_GRAPH: Buffer.from(probeGraph()).toString('base64') },
  });
  if (child.error) return `the WebGPU probe could not run: ${child.error.message}`;
  if (child.status !== 0) {
    const why = child.signal ? `was killed by ${child.signal}` : `exited with code ${child.status}`;
    const said = child.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('Warning:') && !/^\s+at /.test(l)).join('\n');
    return `onnxruntime's WebGPU provider did not start in a probe process, which ${why} (no usable Vulkan/Metal driver?)${said ? `: ${firstLine(said).slice(0, 300)}` : ''}`;
  }
  const values = JSON.parse(child.stdout) as number[];
  if (values.join(',') !== '0,2,0,4') return `onnxruntime's WebGPU provider computed Relu(-1, 2, -3, 4) as (${values.join(', ')})`;
  return null;
}

/** A CUDA 12 library the CUDA provider of onnxruntime-node 1.31 loads, and the part of CUDA it is. */
export interface OnnxCudaLibrary {
  soname: string;
  what: string;
}

/** The libraries libonnxruntime_providers_cuda.so links (CUDA 12.x, cuDNN 9.x), in the order it needs them. */
export const onnxCudaLibraries: readonly OnnxCudaLibrary[] = [
  { soname: 'libcudart.so.12', what: 'the CUDA 12 runtime' },
  { soname: 'libcublas.so.12', what: 'cuBLAS 12' },
  { soname: 'libcublasLt.so.12', what: 'cuBLASLt 12' },
  { soname: 'libcufft.so.11', what: 'cuFFT 11 (CUDA 12)' },
  { soname: 'libcurand.so.10', what: 'cuRAND 10' },
  { soname: 'libcudnn.so.9', what: 'cuDNN 9' },
];

/** CUDA 12.0's oldest drivers (its release notes); later 12.x minor versions run on them by minor-version compatibility. */
const cuda12Drivers: Partial<Record<NodeJS.Platform, string>> = { linux: '525.60.13', win32: '527.41' };

export interface OnnxCudaDiagnosis {
  /** the provider library is where the package's install script puts it */
  installed: boolean;
  library: string;
  gpus: CudaGpu[];
  /** sonames the dynamic loader would not find (ldd's "not found" where the provider is installed, else the list above) */
  missingLibraries: string[];
  /** null: the CUDA provider should run here; else why not, in one line */
  reason: string | null;
}

/** ldd's "libcudnn.so.9 => not found" lines. */
function lddMissing(probe: CudaProbe, library: string): string[] | null {
  const output = probe.run('ldd', [library]);
  if (output === null) return null;
  return output.split('\n').flatMap((line) => /^\s*(\S+)\s+=>\s+not found/.exec(line)?.[1] ?? []);
}

/**
 * Whether onnxruntime's CUDA provider can run here, pure given the probe: its library installed (an
 * opt-in download, docs/onnx.md), an NVIDIA GPU with a CUDA 12 driver, and every CUDA 12 / cuDNN 9
 * library on the loader's path. Each missing library is named.
 */
export function diagnoseOnnxCuda(probe: CudaProbe, library: string, installed: boolean, platform: NodeJS.Platform = process.platform): OnnxCudaDiagnosis {
  const result = (gpus: CudaGpu[], missingLibraries: string[], reason: string | null): OnnxCudaDiagnosis => ({ installed, library, gpus, missingLibraries, reason });
  const gpus = queryGpus(probe) ?? [];
  const missing = platform !== 'linux' || gpus.length === 0 ? [] : missingLibraries(probe, library, installed);
  const problems: string[] = [];
  if (!installed) problems.push(`the CUDA 12 provider is not installed (no ${library}; it is an opt-in download, see docs/onnx.md)`);
  if (gpus.length === 0) problems.push('no NVIDIA GPU (nvidia-smi is missing, fails or lists none)');
  else {
    const floor = cuda12Drivers[platform];
    const driver = parseVersion(gpus[0]!.driverVersion);
    if (floor && driver && compareVersions(driver, parseVersion(floor)!) < 0) problems.push(`NVIDIA driver ${gpus[0]!.driverVersion} is older than ${floor}, the first for CUDA 12`);
  }
  if (missing.length > 0) {
    const names = missing.map((soname) => {
      const known = onnxCudaLibraries.find((l) => l.soname === soname);
      return known ? `${soname} (${known.what})` : soname;
    });
    problems.push(`missing ${names.join(', ')}: install CUDA 12.x and cuDNN 9.x and put their lib folders on LD_LIBRARY_PATH`);
  }
  return result(gpus, missing, problems.length === 0 ? null : problems.join('; '));
}

function missingLibraries(probe: CudaProbe, library: string, installed: boolean): string[] {
  const listed = onnxCudaLibraries.filter((l) => !probe.libraryFound(l.soname)).map((l) => l.soname);
  const linked = installed ? lddMissing(probe, library) : null;
  return [...new Set([...listed, ...(linked ?? [])])];
}
