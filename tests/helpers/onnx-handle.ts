/**
 * A backend handle whose capabilities carry `onnxSessions` on one onnxruntime provider, built by hand
 * so the engine and eval suites need no backend record for it, and that counts the sessions it
 * created and released (a leak shows as created > released once everything is disposed).
 */
import { createOnnxSession, type BackendHandle, type OnnxProvider, type OnnxSession } from '../../src/backend/index.js';
import { probeAdapterInChild } from '../../src/backend/webgpu.js';
import type { Requirement } from './requirements.js';

/** A Vulkan adapter Dawn can open, looked at through the webgpu package's Dawn (the same driver onnxruntime's Dawn uses). */
export const vulkanAdapter: Requirement = {
  name: 'a WebGPU adapter for Dawn (a Vulkan driver)',
  install: 'on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers (see .ci/run)',
  probe() {
    process.env['XDG_RUNTIME_DIR'] ??= '/tmp'; // Mesa warns on every start without it
    const probe = probeAdapterInChild();
    if (probe === undefined) return 'the webgpu package, which probes the adapter, is not installed';
    return 'reason' in probe ? probe.reason : null;
  },
};

export interface SessionCounts {
  created: number;
  released: number;
  /** the batch dimension of every run, in order */
  batches: number[];
}

export interface OnnxTestHandle {
  handle: BackendHandle;
  counts: SessionCounts;
}

export function onnxTestHandle(provider: OnnxProvider = 'cpu', defaultThreads = 2, extra: Partial<BackendHandle['capabilities']> = {}): OnnxTestHandle {
  const counts: SessionCounts = { created: 0, released: 0, batches: [] };
  const handle: BackendHandle = {
    name: `onnxruntime-${provider}`,
    preference: `onnxruntime-${provider}`,
    capabilities: {
      workerThreads: { trainsInWorkers: false, why: 'onnxruntime spreads a session over its intra-op threads in one process' },
      trains: false,
      ...extra,
      onnxSessions: {
        provider,
        defaultThreads: () => defaultThreads,
        async create(model, options): Promise<OnnxSession> {
          const session = await createOnnxSession(model, { ...options, provider });
          counts.created++;
          let released = false;
          return {
            provider: session.provider,
            inputName: session.inputName,
            outputName: session.outputName,
            run(input, shape) {
              counts.batches.push(shape[0]!);
              return session.run(input, shape);
            },
            async release() {
              if (released) return;
              released = true;
              counts.released++;
              await session.release();
            },
          };
        },
      },
    },
    faults: undefined,
  };
  return { handle, counts };
}
