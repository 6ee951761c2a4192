/** Helpers shared by the bench scripts: a per-thread CPU clock and worker threads that run a script from source. */
import { openSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/**
 * This thread's CPU time in ms (Linux: /proc/thread-self/schedstat, nanoseconds on the CPU), so that
 * other processes on a shared machine do not count; wall-clock time where it is unavailable. A read
 * costs ≈ 4 µs.
 */
export function threadClock(): () => number {
  try {
    const fd = openSync('/proc/thread-self/schedstat', 'r');
    const buffer = Buffer.alloc(64);
    return () => {
      readSync(fd, buffer, 0, 64, 0);
      return Number(buffer.toString('latin1', 0, buffer.indexOf(32))) / 1e6;
    };
  } catch {
    return () => performance.now();
  }
}

/** A worker thread running the module at `url` (a .ts file, through tsx) with `data` as its workerData. */
export function startScriptWorker(url: string, data: unknown): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url)}); });`;
  return new Worker(code, { eval: true, workerData: data });
}

/** One convolution of ResNet18 at 224² (input side as the layer sees it: the models pad stride-2 convs explicitly). */
export interface Layer {
  name: string;
  h: number;
  ci: number;
  co: number;
  k: number;
  s: number;
  /** 'same' for stride 1; the models pad explicitly and use 'valid' at stride 2 */
  pad: 'same' | 'valid';
}

export const resnet18Layers: Layer[] = [
  { name: 'stem 7×7/2', h: 230, ci: 3, co: 64, k: 7, s: 2, pad: 'valid' },
  { name: 'layer1 3×3', h: 56, ci: 64, co: 64, k: 3, s: 1, pad: 'same' },
  { name: 'layer2 3×3/2', h: 58, ci: 64, co: 128, k: 3, s: 2, pad: 'valid' },
  { name: 'layer2 3×3', h: 28, ci: 128, co: 128, k: 3, s: 1, pad: 'same' },
  { name: 'layer2 1×1/2', h: 56, ci: 64, co: 128, k: 1, s: 2, pad: 'valid' },
  { name: 'layer3 3×3/2', h: 30, ci: 128, co: 256, k: 3, s: 2, pad: 'valid' },
  { name: 'layer3 3×3', h: 14, ci: 256, co: 256, k: 3, s: 1, pad: 'same' },
  { name: 'layer4 3×3/2', h: 16, ci: 256, co: 512, k: 3, s: 2, pad: 'valid' },
  { name: 'layer4 3×3', h: 7, ci: 512, co: 512, k: 3, s: 1, pad: 'same' },
];

/** Minor page faults of this thread so far (Linux: /proc/thread-self/stat field 10); 0 where unavailable. */
export function threadFaults(): () => number {
  try {
    const fd = openSync('/proc/thread-self/stat', 'r');
    const buffer = Buffer.alloc(512);
    return () => {
      const n = readSync(fd, buffer, 0, 512, 0);
      const text = buffer.toString('latin1', 0, n);
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return Number(fields[7]); // field 10 counted from 1, after pid and (comm)
    };
  } catch {
    return () => 0;
  }
}

/** ResNet50's 1×1 convolutions at 224² (the bottlenecks' expand/reduce and the downsample of layer1). */
export const resnet50PointwiseLayers: Layer[] = [
  { name: 'l1 1×1 64→256', h: 56, ci: 64, co: 256, k: 1, s: 1, pad: 'valid' },
  { name: 'l1 1×1 256→64', h: 56, ci: 256, co: 64, k: 1, s: 1, pad: 'valid' },
  { name: 'l2 1×1 128→512', h: 28, ci: 128, co: 512, k: 1, s: 1, pad: 'valid' },
  { name: 'l2 1×1 512→128', h: 28, ci: 512, co: 128, k: 1, s: 1, pad: 'valid' },
  { name: 'l3 1×1 256→1024', h: 14, ci: 256, co: 1024, k: 1, s: 1, pad: 'valid' },
];

/** Uniform values in [−0.5, 0.5) from a xorshift32 stream: cheap, seeded, no allocation per value. */
export function uniformNoise(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 4294967296 - 0.5;
  }
  return out;
}
