/** backend: one record per compute backend candidate (package, capabilities), choosing and activating one, the kernels the backends lack, and onnxruntime sessions. */
export {
  backendCandidates,
  backendPreferences,
  candidateTrains,
  wasmBinaryDirectory,
  workerThreadBackends,
  type ActivationMemory,
  type BackendCandidate,
  type BackendCapabilities,
  type BackendEnvironment,
  type BackendName,
  type BackendPreference,
  type BackendFaults,
  type BackendPurpose,
  type BackendRequest,
  type CandidateKind,
  type OnnxSessions,
  type WorkerThreads,
} from './candidates.js';
export {
  activateBackend,
  backendFromEnvironment,
  nodeEnvironment,
  parseBackendPreference,
  useBackend,
  useBackends,
  type BackendHandle,
  type BackendPair,
  type BackendSelection,
  type CandidateStatus,
} from './select.js';
export { environmentInfo, formatEnvironmentInfo, onnxRuntimeInfo, wasmSimdSupported, type EnvironmentInfo, type OnnxInfoSources, type OnnxProviderInfo, type OnnxRuntimeInfo } from './info.js';
export { batchNormTraining, type BatchNormTrainingResult } from './kernels/index.js';
export {
  createOnnxSession,
  describeOnnxFault,
  listOnnxProviders,
  onnxProviders,
  type OnnxModelLabel,
  type OnnxProvider,
  type OnnxProviderStatus,
  type OnnxRuntimeLoader,
  type OnnxRuntimeModule,
  type OnnxSession,
  type OnnxSessionOptions,
} from './onnxruntime.js';
export { ensureGraphHost } from './graph-host.js';
