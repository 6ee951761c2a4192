/** config: option tables (type, schema, flags and docs from one record per key), the config kinds built from them, and the one config-file reader. */
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
  parseSavedTrainConfig,
  defaultRecipe,
  recipeDir,
  monitorMetrics,
  type MonitorMetric,
  type TrainConfig,
  type TrainConfigInput,
  type TrainConfigSources,
} from './train.js';
export { readConfigFile } from './files.js';
