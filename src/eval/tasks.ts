/**
 * The eval room's entry points that read training runs and weights: `osteo eval`, `predict`,
 * `export`. Kept out of ./index.ts so that the training room can import eval's metrics and charts
 * without an import cycle (these modules import the training room's run loader).
 */
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
  dashboardFiles,
  dashboardTransform,
  exportDashboard,
  exportFormats,
  exportRun,
  type DashboardExportOptions,
  type ExportFormat,
  type ExportMetadata,
  type ExportResult,
} from './export.js';
