/**
 * Why tfjs-node-gpu cannot use this machine's NVIDIA GPU, in words a user can act on.
 *
 * tfjs-node-gpu 4.22.0 runs libtensorflow 2.9.1, built with CUDA 11.2 and cuDNN 8.1. libtensorflow
 * links none of the CUDA libraries: when it first looks for GPUs it dlopens the driver's
 * libcuda.so.1 and then the eight libraries of TensorFlow's dlopen check (cudart, cublas, cublasLt,
 * cufft, curand, cusolver, cusparse, cudnn, at the sonames below). If any one is missing it logs
 * "Cannot dlopen some GPU libraries", registers no GPU and runs on the CPU: the package still loads,
 * so its loading says nothing about CUDA. This module checks the same things from outside,
 * through a probe that tests replace: the GPUs, driver and compute capabilities nvidia-smi reports,
 * and whether the dynamic loader would find each library.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** What the diagnosis asks of the machine; tests inject fakes that simulate one. */
export interface CudaProbe {
  /** The command's stdout, or null when it could not run or exited non-zero. */
  run(command: string, args: string[]): string | null;
  /** Whether the dynamic loader would find the library: in its cache (ldconfig -p), on LD_LIBRARY_PATH, or in the default folders. */
  libraryFound(name: string): boolean;
  /**
   * A folder where the library sits although the loader does not search it (a CUDA install whose
   * lib folder is not on LD_LIBRARY_PATH), or null. Only asked about libraries libraryFound missed.
   */
  libraryElsewhere?(name: string): string | null;
}

export interface CudaGpu {
  name: string;
  driverVersion: string;
  /** "8.9"; undefined where the driver's nvidia-smi has no compute_cap field (before R510) or reports none */
  computeCapability?: string;
}

export interface CudaDiagnosis {
  /** what nvidia-smi lists, in its index order; empty without a driver or a GPU */
  gpus: CudaGpu[];
  /** the sonames libtensorflow 2.9.1 would fail to dlopen, in the order it opens them */
  missingLibraries: string[];
  /** why tfjs-node-gpu cannot use a GPU, each a full sentence; empty when nothing is in the way */
  problems: string[];
  /** what works, but not well (PTX JIT, a GPU TensorFlow ignores), each a full sentence */
  warnings: string[];
  /** what to do about the problems, as one paragraph; '' when there are none */
  advice: string;
  /** the problems in one line (for "skipped: ..."), or null when tfjs-node-gpu should be able to use a GPU */
  reason: string | null;
}

export interface CudaDiagnosisOptions {
  /** the platform whose driver and libraries are judged (default: this process's) */
  platform?: NodeJS.Platform;
}

/** A CUDA library libtensorflow 2.9.1 dlopens, the part of CUDA it is, and the NVIDIA apt package holding it. */
export interface CudaLibrary {
  soname: string;
  what: string;
  aptPackage: string;
  /** the sonames of newer releases a user may have instead, which do not serve */
  newer?: readonly string[];
}

/** TensorFlow 2.9's dlopen check (stream_executor/platform/default/dlopen_checker.cc), at the CUDA 11.2 sonames. */
export const cudaLibraries: readonly CudaLibrary[] = [
  { soname: 'libcudart.so.11.0', what: 'the CUDA 11 runtime', aptPackage: 'cuda-cudart-11-2', newer: ['libcudart.so.12', 'libcudart.so.13'] },
  { soname: 'libcublas.so.11', what: 'cuBLAS 11', aptPackage: 'libcublas-11-2', newer: ['libcublas.so.12', 'libcublas.so.13'] },
  { soname: 'libcublasLt.so.11', what: 'cuBLASLt 11', aptPackage: 'libcublas-11-2', newer: ['libcublasLt.so.12', 'libcublasLt.so.13'] },
  { soname: 'libcufft.so.10', what: 'cuFFT 10', aptPackage: 'libcufft-11-2', newer: ['libcufft.so.11', 'libcufft.so.12'] },
  { soname: 'libcurand.so.10', what: 'cuRAND 10', aptPackage: 'libcurand-11-2' },
  { soname: 'libcusolver.so.11', what: 'cuSOLVER 11', aptPackage: 'libcusolver-11-2' },
  { soname: 'libcusparse.so.11', what: 'cuSPARSE 11', aptPackage: 'libcusparse-11-2', newer: ['libcusparse.so.12'] },
  { soname: 'libcudnn.so.8', what: 'cuDNN 8', aptPackage: 'libcudnn8 (8.1 or a later 8.x built for CUDA 11)', newer: ['libcudnn.so.9'] },
];

/** The driver's own CUDA library, which libtensorflow opens before the others. */
const driverLibrary = 'libcuda.so.1';

export type Version = readonly number[];

/**
 * The oldest drivers for CUDA 11.2 (its release notes' table), and the oldest that run a CUDA 11.1+
 * program at all, under minor-version compatibility (which has no PTX JIT).
 */
const driverFloors: Partial<Record<NodeJS.Platform, { cuda112: string; cuda11: string }>> = {
  linux: { cuda112: '460.27.03', cuda11: '450.80.02' },
  win32: { cuda112: '460.82', cuda11: '452.39' },
};

/** CUDA 11.2's compilers know sm_35 to sm_86; the libraries carry machine code for no newer GPU. */
const newestNativeCapability: Version = [8, 6];
/** TensorFlow 2.9 ignores a GPU below this ("The minimum required Cuda capability is 3.5"). */
const oldestCapability: Version = [3, 5];

export function parseVersion(text: string | undefined): Version | undefined {
  if (!text || !/^\d+(\.\d+)*$/.test(text)) return undefined;
  return text.split('.').map(Number);
}

export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** One csv row of nvidia-smi: the name may hold commas, so the numeric fields are taken from the right. */
function parseGpuRow(row: string, withCapability: boolean): CudaGpu | undefined {
  const fields = row.split(',').map((field) => field.trim());
  const tail = withCapability ? 2 : 1;
  if (fields.length < tail + 1) return undefined;
  const name = fields.slice(0, fields.length - tail).join(', ');
  const driverVersion = fields[fields.length - tail]!;
  const capability = withCapability ? fields[fields.length - 1]! : '';
  return /^\d+\.\d+$/.test(capability) ? { name, driverVersion, computeCapability: capability } : { name, driverVersion };
}

/** null when nvidia-smi could not run; older drivers reject the compute_cap field, so they are asked again without it. */
export function queryGpus(probe: CudaProbe): CudaGpu[] | null {
  const query = (fields: string) => probe.run('nvidia-smi', [`--query-gpu=${fields}`, '--format=csv,noheader']);
  let withCapability = true;
  let output = query('name,driver_version,compute_cap');
  if (output === null) {
    withCapability = false;
    output = query('name,driver_version');
  }
  if (output === null) return null;
  return output
    .split(/\r?\n/)
    .filter((row) => row.trim() !== '')
    .flatMap((row) => parseGpuRow(row, withCapability) ?? []);
}

const gpuLabel = (gpu: CudaGpu, index: number) => `GPU ${index} (${gpu.name})`;

/** A problem and, where the user can remove it, the step that does. */
interface Finding {
  problem: string;
  /** the problem in a few words, for the one-line reason */
  short: string;
  fix?: string;
}

function driverFinding(gpus: readonly CudaGpu[], platform: NodeJS.Platform): Finding | undefined {
  const floors = driverFloors[platform];
  const driver = gpus[0]!.driverVersion;
  const version = parseVersion(driver);
  if (!floors || !version || compareVersions(version, parseVersion(floors.cuda112)!) >= 0) return undefined;
  const consequence =
    compareVersions(version, parseVersion(floors.cuda11)!) < 0
      ? 'it cannot run CUDA 11.2 programs at all'
      : 'it runs CUDA 11.2 programs only under minor-version compatibility, without the PTX JIT TensorFlow relies on';
  return {
    problem: `NVIDIA driver ${driver} is older than ${floors.cuda112}, the first driver for CUDA 11.2, which tfjs-node-gpu 4.22 (libtensorflow 2.9.1) is built with: ${consequence}.`,
    short: `NVIDIA driver ${driver} is older than ${floors.cuda112} (CUDA 11.2)`,
    fix: `update the NVIDIA driver to ${floors.cuda112} or newer (a current driver runs CUDA 11.2 programs)`,
  };
}

/** A problem when no GPU is new enough for TensorFlow 2.9, and warnings about the GPUs it uses badly or not at all. */
function capabilityFindings(gpus: readonly CudaGpu[]): { findings: Finding[]; warnings: string[] } {
  const warnings: string[] = [];
  let usable = 0;
  gpus.forEach((gpu, index) => {
    const capability = parseVersion(gpu.computeCapability);
    if (!capability) return void (usable += 1);
    if (compareVersions(capability, oldestCapability) < 0) {
      warnings.push(`${gpuLabel(gpu, index)} has compute capability ${gpu.computeCapability}; TensorFlow 2.9 needs 3.5 or higher and ignores it.`);
      return;
    }
    usable += 1;
    if (compareVersions(capability, newestNativeCapability) > 0) {
      warnings.push(
        `${gpuLabel(gpu, index)} has compute capability ${gpu.computeCapability}, newer than CUDA 11.2 knows (machine code up to sm_86): the driver JIT-compiles every kernel from PTX, so the first start can take minutes (cached afterwards; raise CUDA_CACHE_MAXSIZE if every start is slow).`,
      );
    }
  });
  const findings = usable === 0 ? [{ problem: 'No GPU here has compute capability 3.5 or higher, the least TensorFlow 2.9 uses.', short: 'no GPU with compute capability 3.5 or higher' }] : [];
  return { findings, warnings };
}

function installStep(absent: readonly CudaLibrary[]): string {
  const packages = [...new Set(absent.map((library) => library.aptPackage))].join(', ');
  return (
    `install the CUDA 11.2 runtime and cuDNN 8.1 libraries: from NVIDIA's CUDA apt repository ${packages}; ` +
    `or NVIDIA's CUDA 11.2 runfile and the cuDNN 8.1 for CUDA 11 archive, with their lib folder on LD_LIBRARY_PATH; ` +
    `or conda's cudatoolkit 11.2 and cudnn 8.1, with the environment's lib folder on LD_LIBRARY_PATH`
  );
}

/** The driver's libcuda.so.1, then the eight libraries: absent, in a folder the loader skips, or superseded by a newer major. */
function libraryFindings(probe: CudaProbe): { missing: CudaLibrary[]; findings: Finding[] } {
  const findings: Finding[] = [];
  if (!probe.libraryFound(driverLibrary)) {
    findings.push({
      problem: `${driverLibrary}, the driver's CUDA library, is not on the library search path although nvidia-smi runs; in a container, the NVIDIA runtime must expose the compute capability (NVIDIA_DRIVER_CAPABILITIES including compute).`,
      short: `${driverLibrary} not found`,
      fix: `make the driver's ${driverLibrary} visible (reinstall the driver, or start the container with the compute driver capability)`,
    });
  }
  const missing = cudaLibraries.filter((library) => !probe.libraryFound(library.soname));
  const elsewhere = new Map<string, string[]>();
  const absent: CudaLibrary[] = [];
  for (const library of missing) {
    const folder = probe.libraryElsewhere?.(library.soname) ?? null;
    if (folder === null) absent.push(library);
    else elsewhere.set(folder, [...(elsewhere.get(folder) ?? []), library.soname]);
  }
  if (absent.length > 0) {
    const names = absent.map((library) => `${library.soname} (${library.what})`).join(', ');
    findings.push({
      problem: `libtensorflow 2.9.1 cannot load ${absent.length} of the ${cudaLibraries.length} CUDA libraries it needs: ${names}; without all of them it registers no GPU and runs on the CPU.`,
      short: `missing ${absent.map((library) => library.soname).join(', ')}`,
      fix: installStep(absent),
    });
  }
  for (const [folder, names] of elsewhere) {
    findings.push({
      problem: `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} in ${folder}, which the dynamic loader does not search.`,
      short: `${names.join(', ')} not on the loader's path`,
      fix: `add ${folder} to LD_LIBRARY_PATH (or to ld.so.conf.d and run ldconfig)`,
    });
  }
  const newer = absent.flatMap((library) => (library.newer ?? []).filter((soname) => probe.libraryFound(soname)));
  if (newer.length > 0) {
    findings.push({
      problem: `${newer.join(', ')} ${newer.length === 1 ? 'is' : 'are'} installed, but from a newer CUDA or cuDNN release: libtensorflow 2.9.1 loads only the CUDA 11 and cuDNN 8 sonames, which install beside them.`,
      short: `${newer.join(', ')} cannot stand in for CUDA 11 and cuDNN 8`,
    });
  }
  return { missing, findings };
}

/** What to use instead of CUDA: the other GPU path (candidates.ts), which needs only a Vulkan or Metal driver. */
function otherBackend(): string {
  return 'use `--backend webgpu` (any GPU with a Vulkan or Metal driver)';
}

const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1) + '.';

/** The findings' steps, then the other backend; '' without findings. */
function composeAdvice(findings: readonly Finding[]): string {
  if (findings.length === 0) return '';
  const steps = findings.flatMap((finding) => finding.fix ?? []);
  return sentence(steps.length === 0 ? `no GPU here can run tfjs-node-gpu: ${otherBackend()}` : `${steps.join('; then ')}; or ${otherBackend()}`);
}

/**
 * Whether tfjs-node-gpu can use a GPU here and, if not, why: pure given the probe. Without a GPU the
 * libraries are not checked (they would be of no use); off Linux only the GPUs and the driver are.
 */
export function diagnoseCuda(probe: CudaProbe, options: CudaDiagnosisOptions = {}): CudaDiagnosis {
  const platform = options.platform ?? process.platform;
  const gpus = queryGpus(probe);
  if (gpus === null || gpus.length === 0) {
    const finding: Finding =
      gpus === null
        ? { problem: 'nvidia-smi is missing or failed, so there is no working NVIDIA driver (or it sees no GPU).', short: 'no NVIDIA driver (nvidia-smi missing or failed)' }
        : { problem: 'nvidia-smi runs but lists no GPU.', short: 'nvidia-smi lists no GPU' };
    finding.fix = 'install the NVIDIA driver if this machine has an NVIDIA GPU';
    return finish({ gpus: gpus ?? [], missingLibraries: [], findings: [finding], warnings: [] });
  }
  const findings: Finding[] = [];
  const driver = driverFinding(gpus, platform);
  if (driver) findings.push(driver);
  const capabilities = capabilityFindings(gpus);
  findings.push(...capabilities.findings);
  const warnings = capabilities.warnings;
  let missing: CudaLibrary[] = [];
  if (platform === 'linux') {
    const libraries = libraryFindings(probe);
    missing = libraries.missing;
    findings.push(...libraries.findings);
  } else {
    warnings.push(`The CUDA libraries are checked on Linux only: on ${platform}, the CUDA 11.2 and cuDNN 8.1 libraries must be where the system's loader looks (PATH on Windows).`);
  }
  return finish({ gpus, missingLibraries: missing.map((library) => library.soname), findings, warnings });
}

function finish(parts: { gpus: CudaGpu[]; missingLibraries: string[]; findings: readonly Finding[]; warnings: string[] }): CudaDiagnosis {
  const problems = parts.findings.map((finding) => finding.problem);
  const reason = problems.length === 0 ? null : parts.findings.map((finding) => finding.short).join('; ');
  return { gpus: parts.gpus, missingLibraries: parts.missingLibraries, problems, warnings: parts.warnings, advice: composeAdvice(parts.findings), reason };
}

/** The lines `osteo info` prints under the candidates: GPUs, then problems, warnings and what to do. */
export function formatCudaDiagnosis(diagnosis: CudaDiagnosis): string[] {
  const gpus = diagnosis.gpus.map((gpu, index) => {
    const capability = gpu.computeCapability ? `compute capability ${gpu.computeCapability}` : 'compute capability not reported by this driver';
    return `  ${gpuLabel(gpu, index)}: ${capability}, driver ${gpu.driverVersion}`;
  });
  const verdict = diagnosis.gpus.length === 0 ? 'no NVIDIA GPU' : diagnosis.problems.length > 0 ? 'not usable' : 'no problem found';
  const lines = [
    `CUDA for tfjs-node-gpu (CUDA 11.2, cuDNN 8.1): ${verdict}`,
    ...gpus,
    ...diagnosis.problems.map((problem) => `  problem: ${problem}`),
    ...diagnosis.warnings.map((warning) => `  warning: ${warning}`),
  ];
  if (diagnosis.advice !== '') lines.push(`  to fix: ${diagnosis.advice}`);
  return lines;
}

/** The ld.so cache architecture tag of this process's libraries; undefined: accept every entry. */
const loaderArchitecture: Partial<Record<NodeJS.Architecture, string>> = { x64: 'x86-64', arm64: 'AArch64' };

/** Library names in `ldconfig -p` output ("\tlibcudnn.so.8 (libc6,x86-64) => /path"), for this architecture. */
export function parseLdconfigCache(output: string, arch: NodeJS.Architecture = process.arch): Set<string> {
  const tag = loaderArchitecture[arch];
  const names = new Set<string>();
  for (const line of output.split('\n')) {
    const match = /^\s+(\S+)\s+\(([^)]*)\)\s+=>/.exec(line);
    if (!match) continue;
    const flags = match[2]!.split(',').map((flag) => flag.trim());
    if (tag === undefined || flags.includes(tag)) names.add(match[1]!);
  }
  return names;
}

/** Folders CUDA installs into that the loader does not search unless told: /usr/local/cuda*, /opt/cuda, a conda environment. */
function standardCudaFolders(env: NodeJS.ProcessEnv): string[] {
  const folders: string[] = [];
  let local: string[] = [];
  try {
    local = readdirSync('/usr/local').filter((name) => name.startsWith('cuda'));
  } catch {
    // no /usr/local: nothing installed there
  }
  for (const name of local) {
    folders.push(join('/usr/local', name, 'lib64'), join('/usr/local', name, 'lib'));
    try {
      for (const target of readdirSync(join('/usr/local', name, 'targets'))) folders.push(join('/usr/local', name, 'targets', target, 'lib'));
    } catch {
      // a layout without targets/
    }
  }
  folders.push('/opt/cuda/lib64');
  if (env['CONDA_PREFIX']) folders.push(join(env['CONDA_PREFIX'], 'lib'));
  return folders;
}

export interface NodeCudaProbeOptions {
  /** where LD_LIBRARY_PATH and CONDA_PREFIX are read (default: process.env) */
  env?: NodeJS.ProcessEnv;
  /** the folders searched by libraryElsewhere (default: the standard CUDA install folders) */
  cudaFolders?: readonly string[];
  /** milliseconds a command may run (default 10 s: nvidia-smi is slow where persistence mode is off) */
  timeoutMs?: number;
}

/** The probe of this machine: commands through execFileSync, libraries as the Linux dynamic loader finds them. */
export function createNodeCudaProbe(options: NodeCudaProbeOptions = {}): CudaProbe {
  const env = options.env ?? process.env;
  const timeout = options.timeoutMs ?? 10_000;
  const run = (command: string, args: string[]): string | null => {
    try {
      return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout, maxBuffer: 64 * 1024 * 1024 });
    } catch {
      return null;
    }
  };
  let cache: Set<string> | undefined;
  const loaderCache = (): Set<string> => {
    if (cache) return cache;
    // /sbin is not on every user's PATH
    let output: string | null = null;
    for (const command of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) if (output === null) output = run(command, ['-p']);
    return (cache = parseLdconfigCache(output ?? ''));
  };
  const inFolder = (folders: readonly string[], name: string) => folders.find((folder) => folder !== '' && existsSync(join(folder, name))) ?? null;
  // the folders glibc searches after LD_LIBRARY_PATH and its cache
  const defaultFolders = ['/lib', '/usr/lib', '/lib64', '/usr/lib64'];
  return {
    run,
    libraryFound(name) {
      const ldLibraryPath = (env['LD_LIBRARY_PATH'] ?? '').split(':');
      return loaderCache().has(name) || inFolder([...ldLibraryPath, ...defaultFolders], name) !== null;
    },
    libraryElsewhere(name) {
      return inFolder(options.cudaFolders ?? standardCudaFolders(env), name);
    },
  };
}

export const nodeCudaProbe: CudaProbe = createNodeCudaProbe();
