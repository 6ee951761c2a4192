/** eval: evaluate runs and their soft-vote ensemble, predict with Grad-CAM, export weights (pth, safetensors, tfjs, dashboard). */
export {
  ensembleProbabilities,
  fitEnsembleWeights,
  normalizeWeights,
  parseEnsembleWeights,
  simplexGrid,
  type EnsembleWeightSpec,
  type FittedWeights,
} from './ensemble.js';
export { gradCam, gradCamOverlayPng, heatColor, splitAtLayer, upsampleMap, type GradCamResult } from './gradcam.js';
export { directoryLoadHandler, loadLayersModelFromDir, saveLayersModelToDir, shardBytes, type SavedTfjsModel } from './tfjs-io.js';
export {
  disambiguateNames,
  disposeModels,
  loadRunForInference,
  loadWeightsFile,
  predictProbabilities,
  type LoadedModel,
} from './inference.js';
export { defaultEvalOutDir, ensembleName, evaluateRuns, type EvalSplit, type EvaluateOptions, type EvaluationResult } from './evaluate.js';
export {
  formatPredictions,
  predictImages,
  researchDisclaimer,
  type ImagePrediction,
  type ModelPrediction,
  type PredictOptions,
  type PredictResult,
} from './predict.js';
export {
  dashboardModels,
  dashboardRunFlag,
  dashboardTransform,
  exportDashboard,
  exportFormats,
  exportRun,
  type DashboardExportOptions,
  type DashboardModel,
  type ExportFormat,
  type ExportMetadata,
  type ExportResult,
} from './export.js';
