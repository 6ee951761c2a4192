/** backend: one record per compute backend candidate (package, capabilities), choosing and activating one, the kernels the backends lack, and onnxruntime sessions. */
export {
  backendCandidates,
  backendPreferences,
  wasmBinaryDirectory,
  workerThreadBackends,
  type ActivationMemory,
  type BackendCandidate,
  type BackendCapabilities,
  type BackendEnvironment,
  type BackendName,
  type BackendPreference,
  type BackendFaults,
  type BackendRequest,
  type OnnxSessions,
  type WorkerThreads,
} from './candidates.js';
export {
  activateBackend,
  backendFromEnvironment,
  nodeEnvironment,
  parseBackendPreference,
  useBackend,
  type BackendHandle,
  type BackendSelection,
  type CandidateStatus,
} from './select.js';
export { environmentInfo, formatEnvironmentInfo, wasmSimdSupported, type EnvironmentInfo } from './info.js';
export { batchNormTraining, type BatchNormTrainingResult } from './kernels/index.js';
export { createOnnxSession, listOnnxProviders, onnxProviders, type OnnxModelLabel, type OnnxProvider, type OnnxProviderStatus, type OnnxSession, type OnnxSessionOptions } from './onnxruntime.js';
export { ensureGraphHost } from './graph-host.js';
