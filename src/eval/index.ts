/** eval: evaluate runs and their soft-vote ensemble, predict with Grad-CAM, export weights (pth, safetensors, tfjs, dashboard) and the browser viewer (web), serve it, and the model card every export carries. */
export {
  ensembleProbabilities,
  fitEnsembleWeights,
  normalizeWeights,
  parseEnsembleWeights,
  simplexGrid,
  type EnsembleWeightSpec,
  type FittedWeights,
} from './ensemble.js';
export { camFromFeatures, gradCam, gradCamOverlayPng, heatColor, maxEnlargedSide, minOverlaySide, overlayScale, upsampleMap, type FeatureSource, type GradCamOverlay, type GradCamResult, type OverlayRegion } from './gradcam.js';
export { directoryLoadHandler, loadLayersModelFromDir, saveLayersModelToDir, shardBytes, type SavedTfjsModel } from './tfjs-io.js';
export {
  checkpointChoices,
  disambiguateNames,
  disposeModels,
  exportedTransform,
  loadAll,
  loadRunForInference,
  loadWeightsFile,
  mirrorImages,
  nonFiniteError,
  predictProbabilities,
  type CheckpointChoice,
  type LoadedModel,
  type LoadOptions,
} from './inference.js';
export { calibrateRuns, type CalibrateOptions, type RunCalibration } from './calibrate.js';
export { defaultEvalOutDir, ensembleName, evaluateRuns, type EvalSplit, type EvaluateOptions, type EvaluationResult } from './evaluate.js';
export {
  expandInputs,
  formatPredictions,
  predictImages,
  researchDisclaimer,
  type FailedImage,
  type ImagePrediction,
  type ModelPrediction,
  type PredictOptions,
  type PredictResult,
} from './predict.js';
export {
  dashboardFileOf,
  dashboardFiles,
  dashboardModels,
  dashboardRunFlag,
  dashboardTransform,
  exportDashboard,
  exportFormats,
  exportRecordFile,
  exportRun,
  foreignExportFiles,
  onnxModelFile,
  pathFromExport,
  type DashboardExportOptions,
  type DashboardFile,
  type DashboardModel,
  type ExportFormat,
  type ExportMetadata,
  type ExportResult,
  type OnnxInterface,
} from './export.js';
export { bundleViewer, exportWeb, wasmBinaries, type WebExportOptions } from './web-export.js';
export { resolveRequestPath, serveDirectory, serveHost, type ServedDirectory } from './web-serve.js';
export type { WebMetadata, WebModelEntry } from './web/metadata.js';
export { buildModelCard, type CardData, type CardModel, type CardOptions, type ModelCard } from './card.js';
export { cardFiles, writeModelCardFiles } from './card-files.js';
export { writeModelCard, type CardFolderOptions } from './card-folder.js';
export { exportCalibration, type ExportCalibration } from './export-calibration.js';
export type { CardEvaluation, CardMetric, CardPerformance } from './card-evaluation.js';
