/** config: option tables (type, schema, flags and docs from one record per key), the config kinds built from them (training, augmentation files), and the one config-file reader. */
export {
  option,
  optional,
  optionEntries,
  optionsMarkdown,
  optionsText,
  schemaOf,
  typeText,
  coerceText,
  keyAt,
  parseSetArgument,
  validateValues,
  OptionValues,
  type ConfigOf,
  type OptionSpec,
  type OptionTable,
  type Sourced,
} from './options.js';
export {
  trainOptions,
  trainConfigSchema,
  resolveTrainConfig,
  defaultRunDir,
  parseSavedTrainConfig,
  defaultRecipe,
  recipeDir,
  monitorMetrics,
  workersProblem,
  imageSizeRange,
  checkpointInterval,
  type CheckpointInterval,
  type MonitorMetric,
  type TrainConfig,
  type TrainConfigInput,
  type TrainConfigSources,
} from './train.js';
export { locateConfigFile, readConfigFile, shippedConfigDir } from './files.js';
export { loadAugmentConfig, parseAugmentConfig, augmentPresets, augmentPresetDir } from './augment.js';
export { splitOptions, splitConfigSchema, resolveSplitConfig, checkSplitFractions, type SplitConfig } from './split.js';
export { ageBandEdges, evalOptions, evalSplits, evalConfigSchema, resolveEvalConfig, type EvalConfig, type EvalSplit } from './eval.js';
export { screeningTargetOptions, prevalenceOption, predictScreeningOptions, resolvePredictScreening, operatingPointPattern, type PredictScreeningConfig } from './screening.js';
export { calibrateOptions, calibrateConfigSchema, resolveCalibrateConfig, type CalibrateConfig } from './calibrate.js';
export { cardOptions, cardConfigSchema, resolveCardConfig, type CardConfig } from './card.js';
export { pipelineOptions, pipelineConfigSchema, loadPipelineConfig, type PipelineConfig } from './pipeline.js';
export { cvOptions, cvConfigSchema, resolveCvConfig, parseShard, type CvConfig } from './cv.js';
export { required, list, withoutFlags, applyFlags, flagName, type ListItems } from './options.js';
export { dicomWindowOptions, resolveDicomWindow, type DicomWindowConfig } from './dicom.js';
export { regenerateDocs, generatedBlocks, documentedTables } from './docs.js';
