/** pipeline: whole experiments composed from the rooms below — `osteo reproduce` (the published protocol and the clean one, side by side) and `osteo cv` (grouped K-fold cross-validation as shardable jobs). */
export {
  reproduce,
  formatReproduceTable,
  checkAgainstPublished,
  publishedResults,
  publishedProtocolDefects,
  protocols,
  type Protocol,
  type ReproduceOptions,
  type ReproduceRow,
  type ReproduceResult,
} from './reproduce.js';
export {
  runCv,
  collectCv,
  compareCv,
  planCv,
  shardJobs,
  cvEntryNames,
  cvExperimentFromConfig,
  type CvEntry,
  type CvExperiment,
  type CvJob,
  type CvPlan,
  type CvRunOptions,
  type CvRunResult,
  type CvCollectResult,
  type CvCompareResult,
} from './cv.js';
export { buildCvReport, formatCvReport, formatDifferences, cvCsv, ensembleEntry, pooledMetricNames, type CvReport, type CvRow, type CvDifference, type JobPredictions } from './cv-report.js';
export { planRun, executeRun, type PlannedRun, type RunAction } from './training.js';
