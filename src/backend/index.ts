/** backend: one record per compute backend candidate (package, capabilities), choosing and activating one, and the kernels the backends lack. */
export {
  backendPreferences,
  candidateNames,
  currentBackend,
  nodeEnvironment,
  onWasmActivation,
  parseBackendPreference,
  useBackend,
  wasmBinaryDirectory,
  type BackendEnvironment,
  type BackendName,
  type BackendPreference,
  type BackendSelection,
  type CandidateName,
  type CandidateStatus,
} from './select.js';
export { environmentInfo, formatEnvironmentInfo, wasmSimdSupported, type EnvironmentInfo } from './info.js';
export { batchNormTraining, type BatchNormTrainingResult } from './kernels/index.js';
