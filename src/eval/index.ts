/**
 * The eval room's light surface: metrics, charts, statistics, ensembles, reports, Grad-CAM, tfjs IO.
 * The entry points that read runs (evaluate, predict, export) are in ./tasks.ts: the training room
 * imports this file for its metrics and charts, and those entry points import the training room, so
 * keeping them apart keeps the two rooms free of an import cycle.
 */
export {
  argmaxRows,
  classificationMetrics,
  confusionMatrix,
  metricsFromConfusion,
  softmax,
  type ClassMetrics,
  type ClassificationMetrics,
} from './metrics.js';
export {
  confusionMatrixPng,
  confusionMatrixSvg,
  lineChartPng,
  lineChartSvg,
  niceTicks,
  reliabilityDiagramPng,
  reliabilityDiagramSvg,
  seriesColors,
  svgToPng,
  type ConfusionChartOptions,
  type LegendCorner,
  type LineChartOptions,
  type ReliabilityBin,
  type ReliabilityChartOptions,
  type Series,
} from './plot.js';
export {
  bootstrapAccuracy,
  calibration,
  negativeLogLikelihood,
  oneVsRestAuc,
  percentile,
  rocCurve,
  type BootstrapInterval,
  type Calibration,
  type OneVsRestAuc,
  type RandomSource,
  type RocCurve,
} from './stats.js';
export {
  ensembleProbabilities,
  fitEnsembleWeights,
  normalizeWeights,
  parseEnsembleWeights,
  simplexGrid,
  type EnsembleWeightSpec,
  type FittedWeights,
} from './ensemble.js';
export {
  predictionsCsv,
  reportSummaryJson,
  resultsCsv,
  resultsMarkdown,
  resultsTable,
  summarize,
  writeEvaluationReport,
  type EvaluationReport,
  type ModelSummary,
  type WrittenReport,
} from './report.js';
export { gradCam, gradCamOverlayPng, heatColor, splitAtLastFeatureMap, upsampleMap, type GradCamResult } from './gradcam.js';
export { directoryLoadHandler, loadLayersModelFromDir, saveLayersModelToDir, shardBytes, type SavedTfjsModel } from './tfjs-io.js';
