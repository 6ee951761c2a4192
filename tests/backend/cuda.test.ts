import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNodeCudaProbe,
  cudaLibraries,
  diagnoseCuda,
  formatCudaDiagnosis,
  nodeCudaProbe,
  parseLdconfigCache,
  type CudaProbe,
} from '../../src/backend/cuda.js';
import { formatEnvironmentInfo } from '../../src/backend/index.js';

interface Machine {
  /** what `nvidia-smi --query-gpu=name,driver_version,compute_cap` prints; null: it fails (no driver, or a driver without compute_cap) */
  gpus?: string | null;
  /** what the query without compute_cap prints; null: it fails */
  legacyGpus?: string | null;
  /** libraries the loader does not find (every other CUDA 11.2 library and libcuda.so.1 it does) */
  missing?: string[];
  /** further libraries the loader finds */
  present?: string[];
  /** library → a folder holding it that the loader does not search */
  elsewhere?: Record<string, string>;
}

const allMissing = cudaLibraries.map((library) => library.soname);

/** A simulated machine; `calls` records every command run and `asked` every library looked up. */
function machine(spec: Machine): CudaProbe & { calls: string[][]; asked: string[] } {
  const calls: string[][] = [];
  const asked: string[] = [];
  const standard = new Set(['libcuda.so.1', ...allMissing]);
  return {
    calls,
    asked,
    run(command, args) {
      calls.push([command, ...args]);
      if (command !== 'nvidia-smi') return null;
      return args[0]!.includes('compute_cap') ? (spec.gpus ?? null) : (spec.legacyGpus ?? null);
    },
    libraryFound(name) {
      asked.push(name);
      if (spec.missing?.includes(name)) return false;
      return standard.has(name) || (spec.present?.includes(name) ?? false);
    },
    libraryElsewhere: (name) => spec.elsewhere?.[name] ?? null,
  };
}

const linux = { platform: 'linux' } as const;

test('no nvidia-smi: no GPU, the missing driver is the cause, and no library is looked up', () => {
  const probe = machine({});
  const d = diagnoseCuda(probe, linux);
  assert.equal(d.gpus, []);
  assert.equal(d.missingLibraries, []);
  assert.is(d.problems.length, 1);
  assert.match(d.problems[0]!, /nvidia-smi is missing or failed/);
  assert.match(d.problems[0]!, /no working NVIDIA driver/);
  assert.is(d.reason, 'no NVIDIA driver (nvidia-smi missing or failed)');
  assert.match(d.advice, /^Install the NVIDIA driver/);
  assert.equal(probe.asked, [], 'without a GPU the libraries are of no use');
  assert.equal(
    probe.calls,
    [
      ['nvidia-smi', '--query-gpu=name,driver_version,compute_cap', '--format=csv,noheader'],
      ['nvidia-smi', '--query-gpu=name,driver_version', '--format=csv,noheader'],
    ],
    'the query without compute_cap is tried before giving up',
  );
  assert.is(formatCudaDiagnosis(d)[0], 'CUDA for tfjs-node-gpu (CUDA 11.2, cuDNN 8.1): no NVIDIA GPU');
});

test('nvidia-smi that lists no GPU is told apart from a missing one', () => {
  const d = diagnoseCuda(machine({ gpus: '\n' }), linux);
  assert.equal(d.gpus, []);
  assert.equal(d.problems, ['nvidia-smi runs but lists no GPU.']);
  assert.is(d.reason, 'nvidia-smi lists no GPU');
});

test('a supported GPU with every library: nothing missing, no problem, nothing to do', () => {
  const probe = machine({ gpus: 'NVIDIA GeForce RTX 3090, 535.104.05, 8.6\n' });
  const d = diagnoseCuda(probe, linux);
  assert.equal(d.gpus, [{ name: 'NVIDIA GeForce RTX 3090', driverVersion: '535.104.05', computeCapability: '8.6' }]);
  assert.equal(d.missingLibraries, []);
  assert.equal(d.problems, []);
  assert.equal(d.warnings, []);
  assert.is(d.advice, '');
  assert.is(d.reason, null);
  assert.equal(probe.asked, ['libcuda.so.1', ...allMissing], 'the driver library, then the eight of TensorFlow 2.9\'s dlopen check');
  assert.equal(formatCudaDiagnosis(d), [
    'CUDA for tfjs-node-gpu (CUDA 11.2, cuDNN 8.1): no problem found',
    '  GPU 0 (NVIDIA GeForce RTX 3090): compute capability 8.6, driver 535.104.05',
  ]);
});

test('the libraries checked are the CUDA 11.2 / cuDNN 8 sonames libtensorflow 2.9 dlopens', () => {
  assert.equal(allMissing, [
    'libcudart.so.11.0',
    'libcublas.so.11',
    'libcublasLt.so.11',
    'libcufft.so.10',
    'libcurand.so.10',
    'libcusolver.so.11',
    'libcusparse.so.11',
    'libcudnn.so.8',
  ]);
});

test('a missing libcudnn.so.8 is named, with the one package that brings it', () => {
  const d = diagnoseCuda(machine({ gpus: 'Tesla V100-SXM2-16GB, 525.85.12, 7.0', missing: ['libcudnn.so.8'] }), linux);
  assert.equal(d.missingLibraries, ['libcudnn.so.8']);
  assert.is(d.problems.length, 1);
  assert.match(d.problems[0]!, /cannot load 1 of the 8 CUDA libraries it needs: libcudnn\.so\.8 \(cuDNN 8\)/);
  assert.match(d.problems[0]!, /runs on the CPU/);
  assert.is(d.reason, 'missing libcudnn.so.8');
  assert.match(d.advice, /CUDA 11\.2 runtime and cuDNN 8\.1/);
  assert.match(d.advice, /libcudnn8 \(8\.1 or a later 8\.x built for CUDA 11\)/);
  assert.not.match(d.advice, /libcublas-11-2|cuda-cudart-11-2/, 'only the packages of the missing libraries');
  assert.match(d.advice, /--backend/, 'and the way around CUDA');
  const lines = formatCudaDiagnosis(d);
  assert.is(lines[0], 'CUDA for tfjs-node-gpu (CUDA 11.2, cuDNN 8.1): not usable');
  assert.ok(lines.some((line) => line.startsWith('  problem: ') && line.includes('libcudnn.so.8')));
  assert.ok(lines.some((line) => line.startsWith('  to fix: ') && line.includes('libcudnn8')));
});

test('with no CUDA 11.2 library installed, all eight are named in order and every package is advised', () => {
  const d = diagnoseCuda(machine({ gpus: 'Tesla T4, 535.104.05, 7.5', missing: allMissing }), linux);
  assert.equal(d.missingLibraries, allMissing);
  assert.match(d.problems[0]!, /cannot load 8 of the 8/);
  for (const pkg of ['cuda-cudart-11-2', 'libcublas-11-2', 'libcufft-11-2', 'libcurand-11-2', 'libcusolver-11-2', 'libcusparse-11-2', 'libcudnn8']) {
    assert.ok(d.advice.includes(pkg), `advice names ${pkg}`);
  }
  assert.is(d.advice.match(/libcublas-11-2/g)!.length, 1, 'cublas and cublasLt come from one package, named once');
});

test('a newer CUDA or cuDNN in place of the 11.x ones is called out as not serving', () => {
  const d = diagnoseCuda(
    machine({ gpus: 'NVIDIA A100-SXM4-80GB, 550.54.15, 8.0', missing: ['libcudart.so.11.0', 'libcudnn.so.8'], present: ['libcudart.so.12', 'libcudnn.so.9'] }),
    linux,
  );
  assert.equal(d.missingLibraries, ['libcudart.so.11.0', 'libcudnn.so.8']);
  assert.ok(d.problems.some((p) => /libcudart\.so\.12, libcudnn\.so\.9 are installed, but from a newer CUDA or cuDNN release/.test(p)));
});

test('a library in a CUDA folder the loader does not search is named with that folder', () => {
  const folder = '/opt/example/cuda-11.2/lib64';
  const d = diagnoseCuda(
    machine({ gpus: 'Tesla T4, 535.104.05, 7.5', missing: ['libcudnn.so.8', 'libcufft.so.10'], elsewhere: { 'libcudnn.so.8': folder } }),
    linux,
  );
  assert.equal(d.missingLibraries, ['libcufft.so.10', 'libcudnn.so.8'], 'missing for the loader, wherever it sits');
  assert.ok(d.problems.includes(`libcudnn.so.8 is in ${folder}, which the dynamic loader does not search.`));
  assert.ok(d.problems.some((p) => /cannot load 1 of the 8 CUDA libraries it needs: libcufft\.so\.10/.test(p)));
  assert.match(d.advice, new RegExp(`add ${folder} to LD_LIBRARY_PATH`));
  assert.match(d.advice, /libcufft-11-2/);
  assert.not.match(d.advice, /libcudnn8/, 'no install advice for a library that is already there');
});

test("the driver's libcuda.so.1 hidden from the loader (a container without the compute capability) is a cause", () => {
  const d = diagnoseCuda(machine({ gpus: 'Tesla T4, 535.104.05, 7.5', missing: ['libcuda.so.1'] }), linux);
  assert.equal(d.missingLibraries, [], 'libcuda.so.1 belongs to the driver, not to the CUDA 11.2 libraries');
  assert.is(d.problems.length, 1);
  assert.match(d.problems[0]!, /libcuda\.so\.1, the driver's CUDA library/);
  assert.match(d.problems[0]!, /NVIDIA_DRIVER_CAPABILITIES/);
  assert.is(d.reason, 'libcuda.so.1 not found');
});

test('a driver older than CUDA 11.2 needs is named as the cause, with its version and the minimum', () => {
  const old = diagnoseCuda(machine({ gpus: 'Tesla T4, 450.80.02, 7.5' }), linux);
  assert.is(old.problems.length, 1);
  assert.match(old.problems[0]!, /NVIDIA driver 450\.80\.02 is older than 460\.27\.03, the first driver for CUDA 11\.2/);
  assert.match(old.problems[0]!, /minor-version compatibility/);
  assert.is(old.reason, 'NVIDIA driver 450.80.02 is older than 460.27.03 (CUDA 11.2)');
  assert.match(old.advice, /^Update the NVIDIA driver to 460\.27\.03 or newer/);

  const ancient = diagnoseCuda(machine({ gpus: 'Tesla K80, 418.67, 3.7' }), linux);
  assert.match(ancient.problems[0]!, /NVIDIA driver 418\.67 is older than 460\.27\.03.*cannot run CUDA 11\.2 programs at all/);

  assert.equal(diagnoseCuda(machine({ gpus: 'Tesla T4, 460.27.03, 7.5' }), linux).problems, [], 'the minimum itself is enough');
  assert.is(diagnoseCuda(machine({ gpus: 'Tesla T4, 460.27.02, 7.5' }), linux).problems.length, 1, 'one patch level below is not');
  assert.equal(diagnoseCuda(machine({ gpus: 'Tesla T4, 470.57.02, 7.5' }), linux).problems, []);
  const windows = diagnoseCuda(machine({ gpus: 'NVIDIA GeForce RTX 3060, 456.71, 8.6' }), { platform: 'win32' });
  assert.match(windows.problems[0]!, /older than 460\.82/, 'Windows drivers are numbered apart');
});

test('compute capability 8.9 (Ada) and 9.0 (Hopper) are warned about PTX JIT; 8.6 and below are not', () => {
  const d = diagnoseCuda(machine({ gpus: 'NVIDIA GeForce RTX 3090, 550.54.15, 8.6\nNVIDIA L40S, 550.54.15, 8.9\nNVIDIA H200, 550.54.15, 9.0\n' }), linux);
  assert.is(d.gpus.length, 3);
  assert.equal(d.problems, [], 'a warning, not a cause');
  assert.is(d.reason, null);
  assert.is(d.warnings.length, 2);
  assert.match(d.warnings[0]!, /^GPU 1 \(NVIDIA L40S\) has compute capability 8\.9, newer than CUDA 11\.2 knows \(machine code up to sm_86\)/);
  assert.match(d.warnings[0]!, /PTX/);
  assert.match(d.warnings[1]!, /^GPU 2 \(NVIDIA H200\) has compute capability 9\.0/);
  assert.ok(formatCudaDiagnosis(d).includes(`  warning: ${d.warnings[0]}`));
  assert.equal(diagnoseCuda(machine({ gpus: 'Tesla T4, 535.104.05, 7.5' }), linux).warnings, []);
});

test('a GPU below compute capability 3.5 is ignored by TensorFlow 2.9: a cause when it is the only one', () => {
  const only = diagnoseCuda(machine({ gpus: 'Quadro K4000, 460.32.03, 3.0' }), linux);
  assert.equal(only.problems, ['No GPU here has compute capability 3.5 or higher, the least TensorFlow 2.9 uses.']);
  assert.match(only.warnings[0]!, /GPU 0 \(Quadro K4000\) has compute capability 3\.0; TensorFlow 2\.9 needs 3\.5/);
  assert.match(only.advice, /^No GPU here can run tfjs-node-gpu: /);
  const mixed = diagnoseCuda(machine({ gpus: 'Quadro K4000, 460.32.03, 3.0\nTesla T4, 460.32.03, 7.5' }), linux);
  assert.equal(mixed.problems, []);
  assert.is(mixed.warnings.length, 1);
});

test('a driver whose nvidia-smi has no compute_cap field is asked again without it', () => {
  const probe = machine({ gpus: null, legacyGpus: 'Tesla T4, 470.57.02\nTesla T4, 470.57.02\n' });
  const d = diagnoseCuda(probe, linux);
  assert.equal(d.gpus, [
    { name: 'Tesla T4', driverVersion: '470.57.02' },
    { name: 'Tesla T4', driverVersion: '470.57.02' },
  ]);
  assert.is(d.gpus[0]!.computeCapability, undefined);
  assert.equal(d.problems, []);
  assert.equal(d.warnings, [], 'an unknown capability is neither warned nor blamed');
  assert.is(probe.calls.length, 2);
  assert.equal(probe.calls[1], ['nvidia-smi', '--query-gpu=name,driver_version', '--format=csv,noheader']);
  assert.is(formatCudaDiagnosis(d)[1], '  GPU 0 (Tesla T4): compute capability not reported by this driver, driver 470.57.02');
});

test('a compute capability reported as [N/A], and a GPU name with a comma, parse', () => {
  const d = diagnoseCuda(machine({ gpus: 'Acme, Inc. Accelerator, 535.104.05, [N/A]\r\n' }), linux);
  assert.equal(d.gpus, [{ name: 'Acme, Inc. Accelerator', driverVersion: '535.104.05' }]);
});

test('off Linux the libraries are not looked up, and the diagnosis says so', () => {
  const probe = machine({ gpus: 'NVIDIA GeForce RTX 3060, 531.79, 8.6' });
  const d = diagnoseCuda(probe, { platform: 'win32' });
  assert.equal(probe.asked, []);
  assert.equal(d.problems, []);
  assert.match(d.warnings[0]!, /checked on Linux only/);
});

test('parseLdconfigCache keeps the entries of this architecture', () => {
  const output = [
    '805 libs found in cache `/etc/ld.so.cache\'',
    '\tlibcudnn.so.8 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcudnn.so.8',
    '\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6',
    '\tlibc.so.6 (libc6, OS ABI: Linux 3.2.0) => /lib/i386-linux-gnu/libc.so.6',
    '\tlibfoo32.so.1 (libc6) => /lib/i386-linux-gnu/libfoo32.so.1',
    '\tlibbar.so.2 (libc6,AArch64) => /lib/aarch64-linux-gnu/libbar.so.2',
  ].join('\n');
  assert.equal([...parseLdconfigCache(output, 'x64')].sort(), ['libc.so.6', 'libcudnn.so.8']);
  assert.equal([...parseLdconfigCache(output, 'arm64')], ['libbar.so.2']);
});

test('the node probe finds libc.so.6 and not a made-up library', () => {
  assert.is(nodeCudaProbe.libraryFound('libc.so.6'), true);
  assert.is(nodeCudaProbe.libraryFound('libosteo-made-up-4f7c.so.3'), false);
  assert.is(nodeCudaProbe.libraryElsewhere?.('libosteo-made-up-4f7c.so.3'), null);
});

test('the node probe returns stdout, or null for a missing command or a failing one', () => {
  assert.is(nodeCudaProbe.run(process.execPath, ['--version']), `${process.version}\n`);
  assert.is(nodeCudaProbe.run('osteo-no-such-command-4f7c', []), null);
  assert.is(nodeCudaProbe.run(process.execPath, ['-e', 'process.exit(3)']), null);
});

test('the node probe searches LD_LIBRARY_PATH, and reports a library only in a CUDA folder as elsewhere', () => {
  const root = mkdtempSync(join(tmpdir(), 'osteo-cuda-'));
  try {
    const onPath = join(root, 'on-path');
    const cudaFolder = join(root, 'cuda-11.2', 'lib64');
    for (const [folder, name] of [
      [onPath, 'libosteo-fake-a.so.1'],
      [cudaFolder, 'libosteo-fake-b.so.1'],
    ] as const) {
      mkdirSync(folder, { recursive: true });
      writeFileSync(join(folder, name), '');
    }
    const probe = createNodeCudaProbe({ env: { LD_LIBRARY_PATH: `${join(root, 'nothing')}:${onPath}` }, cudaFolders: [cudaFolder] });
    assert.is(probe.libraryFound('libosteo-fake-a.so.1'), true);
    assert.is(probe.libraryFound('libosteo-fake-b.so.1'), false, 'a CUDA folder is not on the loader path');
    assert.is(probe.libraryElsewhere?.('libosteo-fake-b.so.1'), cudaFolder);
    assert.is(probe.libraryElsewhere?.('libosteo-fake-c.so.1'), null);
    const without = createNodeCudaProbe({ env: {}, cudaFolders: [] });
    assert.is(without.libraryFound('libosteo-fake-a.so.1'), false, 'found only through LD_LIBRARY_PATH');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test.run();

test('osteo info prints the diagnosis under the candidates where nvidia-smi lists a GPU that tfjs-node-gpu cannot use', () => {
  const cuda = diagnoseCuda(machine({ gpus: 'NVIDIA H100 80GB HBM3, 550.54.15, 9.0', missing: ['libcudnn.so.8'] }), { platform: 'linux' });
  const base = {
    osteoVersion: '0.1.0',
    tfjsVersion: '4.22.0',
    node: 'v20',
    platform: 'linux-x64',
    cpuCores: 2,
    cpuModel: 'cpu',
    backend: 'wasm',
    candidate: 'wasm',
    reason: 'wasm is the first available',
    candidates: [{ candidate: 'tfjs-node-gpu', package: '@tensorflow/tfjs-node-gpu', available: false, reason: `skipped: ${cuda.reason}` }],
    training: { backend: 'wasm', candidate: 'wasm', reason: 'wasm is the first available' },
    onnxruntime: { version: '1.31.1', error: 'not loaded in this test' },
    wasmSimd: true,
  };
  const text = formatEnvironmentInfo({ ...base, cuda });
  assert.match(text, /skipped: .*libcudnn\.so\.8/);
  assert.match(text, /CUDA for tfjs-node-gpu \(CUDA 11\.2, cuDNN 8\.1\): not usable/);
  assert.match(text, /NVIDIA H100 80GB HBM3.*compute capability 9\.0, driver 550\.54\.15/);
  assert.match(text, /--backend webgpu/);
  assert.not.match(formatEnvironmentInfo(base), /CUDA for tfjs-node-gpu/, 'no GPU: nothing printed');
});
