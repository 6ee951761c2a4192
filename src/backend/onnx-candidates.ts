/**
 * The onnxruntime candidates: onnxruntime-node's CUDA, WebGPU and CPU execution providers, each a
 * record like the tfjs ones (candidates.ts), for inference only. Their capability is `onnxSessions`,
 * the session factory the engine room builds its onnxruntime inference engine on; `trains: false`
 * keeps them out of training (auto passes over them, a named request to train is refused).
 */
import { availableParallelism } from 'node:os';
import type { BackendCandidate, BackendEnvironment, BackendRequest, OnnxSessions } from './candidates.js';
import { createOnnxSession, describeOnnxFault, listOnnxProviders, type OnnxProvider, type OnnxRuntimeLoader } from './onnxruntime.js';
import { describeAdapter, judgeAdapter, type AdapterProbe } from './webgpu.js';

/** The session factory of one provider; `runtime`: tests hand in a fake onnxruntime module. */
export function onnxSessions(provider: OnnxProvider, defaultThreads: () => number, runtime?: OnnxRuntimeLoader): OnnxSessions {
  return {
    provider,
    defaultThreads,
    create: (model, options) => createOnnxSession(model, { provider, threads: options.threads ?? defaultThreads(), label: options.label }, runtime),
  };
}

/** After importing onnxruntime-node: null when `provider` is in this build (bundled, or its library installed), else why not. */
async function prepareProvider(module: unknown, provider: OnnxProvider): Promise<string | null> {
  const ort = module as { listSupportedBackends?: unknown; default?: unknown };
  const loaded = (typeof ort.listSupportedBackends === 'function' ? ort : ort.default) as Awaited<ReturnType<OnnxRuntimeLoader>> | undefined;
  if (typeof loaded?.listSupportedBackends !== 'function') return 'onnxruntime-node has no listSupportedBackends(): an unexpected version (osteo uses 1.31)';
  const status = (await listOnnxProviders(() => Promise.resolve(loaded))).find((p) => p.name === provider);
  if (status === undefined) return `this onnxruntime-node build has no '${provider}' execution provider`;
  if (!status.installed) return `the '${provider}' execution provider is not installed (no ${status.library})`;
  return null;
}

const noTraining = 'onnxruntime does not train here (osteo trains on tfjs); at inference, --workers sets its intra-op threads';
/** A GPU provider computes the graph on the device; the nodes left on the CPU are shape arithmetic. */
const oneThread = () => 1;
const perCore = () => availableParallelism();

function providerReason(env: BackendEnvironment, provider: 'cuda' | 'webgpu'): string | null {
  return env.onnxProviderUnavailableReason ? env.onnxProviderUnavailableReason(provider) : null;
}

/** The --backend value that asks for the best onnxruntime provider here (auto's order among them). */
export const onnxFamily = 'onnxruntime';

type OnnxCandidate<P extends OnnxProvider> = BackendCandidate & { backend: `onnxruntime-${P}`; family: typeof onnxFamily };

function onnxCandidate<P extends OnnxProvider>(provider: P, record: Pick<BackendCandidate, 'installHint' | 'probe' | 'details'>, threads: () => number): OnnxCandidate<P> {
  const name = `onnxruntime-${provider}` as const;
  return {
    name,
    backend: name,
    family: onnxFamily,
    kind: 'onnx-sessions',
    package: 'onnxruntime-node',
    ...record,
    prepare: (module: unknown) => prepareProvider(module, provider),
    capabilities: {
      workerThreads: { trainsInWorkers: false, why: noTraining },
      trains: false,
      onnxSessions: onnxSessions(provider, threads),
      faults: { describe: (error: unknown) => describeOnnxFault(error, provider) },
    },
  };
}

/** The adapter onnxruntime's Dawn would use, as the webgpu package's Dawn sees it (see onnx-probe.ts). */
function judgeOnnxAdapter(adapter: AdapterProbe | undefined): string | null {
  if (adapter === undefined) return 'skipped: the adapter cannot be judged without the webgpu package (an optional dependency), so auto does not take it; --backend onnxruntime-webgpu uses it anyway';
  return judgeAdapter(adapter, '--backend onnxruntime-webgpu');
}

export const onnxCudaCandidate = onnxCandidate(
  'cuda',
  {
    installHint:
      'install the CUDA 12 provider (`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js`, see docs/onnx.md), with an NVIDIA driver ≥ 525 and the CUDA 12.x and cuDNN 9.x libraries on the loader path',
    // the provider library is an opt-in download and needs CUDA 12 and cuDNN 9: checked before onnxruntime loads it
    probe(env: BackendEnvironment, request: BackendRequest) {
      const reason = providerReason(env, 'cuda');
      return reason === null ? null : request.requested ? reason : `skipped: ${reason}`;
    },
  },
  oneThread,
);

export const onnxWebgpuCandidate = onnxCandidate(
  'webgpu',
  {
    installHint:
      "it is bundled with onnxruntime-node (linux x64/arm64, win32, darwin) and needs a Vulkan driver (Linux, Windows) or macOS; a software Vulkan driver for tests: mesa-vulkan-drivers 24 or later",
    // auto takes a hardware adapter only, as for tfjs's webgpu; a named request takes a software one too.
    // Either way the provider first runs a one-node graph in a child process.
    probe(env: BackendEnvironment, request: BackendRequest) {
      const judged = request.requested ? null : judgeOnnxAdapter(env.webgpuAdapter());
      if (judged) return judged;
      return providerReason(env, 'webgpu');
    },
    details(env: BackendEnvironment) {
      const adapter = env.webgpuAdapter();
      const seen = adapter && 'summary' in adapter ? describeAdapter(adapter.summary) : { adapter: 'not known (the webgpu package, which reads it, is not installed)' };
      return { ...seen, threads: `${oneThread()} (the graph runs on the GPU)` };
    },
  },
  oneThread,
);

export const onnxCpuCandidate = onnxCandidate(
  'cpu',
  {
    installHint: 'reinstall the project dependencies with `npm ci` (onnxruntime-node bundles its CPU provider)',
    details: () => ({ threads: `${perCore()} (one per core; --workers sets another count)` }),
  },
  perCore,
);
