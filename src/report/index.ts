/** report: the metric registry, metrics, the soft vote, bootstrap and calibration statistics, screening operating points and decision curves, result tables (external validation and subgroups among them) and PNG charts — a leaf that config, train, eval and pipeline use. */
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
  builtInMetrics,
  isImprovement,
  metricInput,
  metricLabel,
  metricRegistry,
  MetricRegistry,
  monitorMetrics,
  weakClassIndex,
  type MetricInput,
  type MetricRecord,
  type MetricValue,
  type MetricView,
  type MonitorMetric,
  type OverallMetric,
  type PerClassMetric,
} from './registry.js';
export { normalizeWeights, softVote } from './vote.js';
export { kappaFromConfusion, meanAbsoluteClassError, quadraticWeightedKappa } from './ordinal.js';
export {
  comparisonsCsv,
  predictionsCsv,
  reportSummaryJson,
  resultsCsv,
  resultsMarkdown,
  resultsTable,
  summarize,
  writeEvaluationReport,
  modelSummaryJson,
  type EvaluationReport,
  type ModelSummary,
  type ReportSection,
  type WrittenReport,
} from './results.js';
export { externalSection, mostlyTrainingFraction, presentClasses, refitOnExternal, summarizeSubset, type ExternalCopy, type ExternalLeakage, type ExternalRefit, type ExternalResults, type ScoredModel } from './external.js';
export { ageBand, ageBandNames, subgroupAttributes, subgroupResults, subgroupsSection, type AttributeSubgroups, type ImageAttributes, type Subgroup, type SubgroupAttribute, type SubgroupResults } from './subgroups.js';
export { compareWithEnsemble, delongTest, pairedBootstrapDifference, pairedComparison, pairedRecordKeys, type DelongTest, type PairedComparison, type PairedDifference } from './paired.js';
export { binaryScores, binaryViews, type BinaryView } from './views.js';
export { applyTemperature, calibrationReport, fitTemperature, temperatureBracket, type CalibrationBinStat, type CalibrationReport, type CalibrationSection, type FittedTemperature, type ModelCalibration } from './calibration.js';
export {
  chooseThresholds,
  checkTarget,
  countsAt,
  decisionCurve,
  decisionThresholds,
  evaluateOperatingPoints,
  fitOperatingPoints,
  operatingPointName,
  precisionRecallCurve,
  predictiveValuesAt,
  ratesAt,
  ratesFromCounts,
  requireEveryClass,
  type BinaryCounts,
  type BinaryRates,
  type DecisionCurve,
  type FittedOperatingPoints,
  type IntervalValue,
  type OperatingPoint,
  type OperatingRule,
  type PointEvaluation,
  type PrecisionRecallCurve,
  type ScreeningTargets,
  type ViewEvaluation,
  type ViewOperatingPoints,
} from './screening.js';
export { operatingPointsJson, operatingPointsMarkdown, operatingPointsPlots, type EnsembleScoreSource, type ModelOperatingPoints, type OperatingPointsSection } from './screening-report.js';
