/** The eval room's surface: metrics, charts, ensembles, reports, predict, Grad-CAM and export. */
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
  type LineChartOptions,
  type ReliabilityBin,
  type ReliabilityChartOptions,
  type Series,
} from './plot.js';
