/**
 * `osteo eval`: every run's best model on one split of the manifest, plus the soft-vote ensemble,
 * with the report files. Ensemble weights `auto` are fitted on the val split BEFORE any image of the
 * evaluated split is read, from val predictions only.
 */
import { dirname, join, resolve } from 'node:path';
import { classNames, preprocessForModel, readSplitManifest, type EvalTransform, type ManifestRow } from '../data/index.js';
import { createRng, UserError } from '../util/index.js';
import { evalOptions, type EvalSplit } from '../config/index.js';
import { ensembleProbabilities, fitEnsembleWeights, parseEnsembleWeights } from './ensemble.js';
import { disambiguateNames, disposeModels, loadRunForInference, predictProbabilities, transformKey, type LoadedModel } from './inference.js';
import { summarize, writeEvaluationReport, type EvaluationReport, type ModelSummary, type WrittenReport } from '../report/index.js';

export type { EvalSplit };

/**
 * What to evaluate, validated by the caller (`osteo eval` through the eval option table, a pipeline
 * through its config); an absent setting takes the eval table's default, so none is written here.
 */
export interface EvaluateOptions {
  runs: string[];
  dataDir: string;
  split?: EvalSplit;
  tta?: boolean;
  /** `auto` | `equal` | `w1,w2,…` (one weight per run, in order). */
  weights?: string;
  /** Where the report goes; null writes nothing. Default: `eval-<split>` beside the first run. */
  outDir?: string | null;
  batchSize?: number;
  /** Seed of the bootstrap resampling. */
  seed?: number;
  resamples?: number;
  /** How an image file becomes a normalized crop (tests substitute one that records what is read). */
  readImage?: (file: string, transform: EvalTransform) => Promise<Float32Array>;
  /** Progress: which split is being predicted, images done so far. */
  onProgress?: (event: { split: EvalSplit; done: number; total: number }) => void;
  /** Called once the ensemble weights are fixed (tests check no evaluated image was read before). */
  onWeightsFitted?: (weights: number[]) => void;
}

export const ensembleName = 'ensemble (soft vote)';

export function defaultEvalOutDir(runs: string[], split: EvalSplit): string {
  return join(dirname(resolve(runs[0]!)), `eval-${split}`);
}

/** Each model's probabilities on `rows`, images preprocessed once per distinct transform. */
async function predictRows(
  models: LoadedModel[],
  dataDir: string,
  rows: ManifestRow[],
  split: EvalSplit,
  options: Pick<EvaluateOptions, 'tta' | 'batchSize' | 'readImage' | 'onProgress'>,
): Promise<Float32Array[]> {
  const readImage = options.readImage ?? ((file, transform) => preprocessForModel(file, transform));
  const batchSize = options.batchSize ?? evalOptions.batchSize.default;
  const outputs = models.map((m) => new Float32Array(rows.length * m.numClasses));
  const groups = new Map<string, LoadedModel[]>();
  for (const m of models) groups.set(transformKey(m.transform), [...(groups.get(transformKey(m.transform)) ?? []), m]);
  for (let start = 0; start < rows.length; start += batchSize) {
    const batch = rows.slice(start, start + batchSize);
    for (const group of groups.values()) {
      const transform = group[0]!.transform;
      const pixels = transform.crop * transform.crop * 3;
      const images = new Float32Array(batch.length * pixels);
      for (let i = 0; i < batch.length; i++) images.set(await readImage(join(dataDir, batch[i]!.path), transform), i * pixels);
      for (const m of group) {
        const probabilities = predictProbabilities(m, images, batch.length, { tta: options.tta, batchSize });
        outputs[models.indexOf(m)]!.set(probabilities, start * m.numClasses);
      }
    }
    options.onProgress?.({ split, done: Math.min(rows.length, start + batchSize), total: rows.length });
  }
  return outputs;
}

export interface EvaluationResult {
  report: EvaluationReport;
  written: WrittenReport | null;
}

export async function evaluateRuns(options: EvaluateOptions): Promise<EvaluationResult> {
  const split = options.split ?? evalOptions.split.default;
  const weightSpec = parseEnsembleWeights(options.weights ?? evalOptions.weights.default, options.runs.length);
  if (weightSpec.kind === 'auto' && split === 'val') {
    throw new UserError('--weights auto is fitted on the val split, so evaluating it on val would be biased: use --split test, or --weights equal|w1,w2,…');
  }
  const seed = options.seed ?? evalOptions.seed.default;
  const resamples = options.resamples ?? evalOptions.resamples.default;
  const manifest = await readSplitManifest(options.dataDir);
  const rows = manifest.filter((r) => r.split === split);
  if (rows.length === 0) throw new UserError(`the ${split} split of ${options.dataDir} is empty: re-run \`osteo data split --data ${options.dataDir}\``);
  const valRows = manifest.filter((r) => r.split === 'val');
  if (weightSpec.kind === 'auto' && valRows.length === 0) throw new UserError(`--weights auto needs a val split, and ${options.dataDir} has none`);

  const models: LoadedModel[] = [];
  try {
    for (const run of options.runs) models.push(await loadRunForInference(run));
    disambiguateNames(models);
    const numClasses = models[0]!.numClasses;
    if (models.some((m) => m.numClasses !== numClasses)) throw new UserError('the runs disagree on the number of classes; they cannot be ensembled');
    if (numClasses !== classNames.length) throw new UserError(`the runs have ${numClasses} classes but the data has ${classNames.length}`);

    let ensembleWeights: EvaluationReport['ensembleWeights'];
    if (weightSpec.kind === 'auto') {
      // Fitting sees val rows only; the evaluated split is not read until the weights are fixed.
      const valProbabilities = await predictRows(models, options.dataDir, valRows, 'val', options);
      const fitted = fitEnsembleWeights(
        valProbabilities,
        valRows.map((r) => r.label),
        numClasses,
      );
      ensembleWeights = { mode: 'auto', weights: fitted.weights, fittedOn: 'val', valNll: fitted.nll, equalValNll: fitted.equalNll };
    } else if (weightSpec.kind === 'fixed') {
      ensembleWeights = { mode: 'fixed', weights: weightSpec.weights };
    } else {
      ensembleWeights = { mode: 'equal', weights: models.map(() => 1 / models.length) };
    }
    options.onWeightsFitted?.(ensembleWeights.weights);

    const probabilities = await predictRows(models, options.dataDir, rows, split, options);
    const labels = rows.map((r) => r.label);
    // Every summary resamples with the same seed, so the intervals are paired: same resampled images.
    const summaries: ModelSummary[] = models.map((m, i) =>
      summarize(m.name, 'model', probabilities[i]!, labels, numClasses, { rng: createRng(seed), resamples, run: m.run }),
    );
    if (models.length > 1) {
      const ensemble = ensembleProbabilities(probabilities, ensembleWeights.weights);
      summaries.push(summarize(ensembleName, 'ensemble', ensemble, labels, numClasses, { rng: createRng(seed), resamples }));
    }
    const report: EvaluationReport = {
      split,
      dataDir: options.dataDir,
      classNames,
      tta: options.tta ?? evalOptions.tta.default,
      ensembleWeights,
      bootstrap: { resamples, seed },
      images: rows.map((r) => ({ path: r.path, label: r.label })),
      models: summaries,
    };
    const outDir = options.outDir === undefined ? defaultEvalOutDir(options.runs, split) : options.outDir;
    const written = outDir === null ? null : await writeEvaluationReport(report, outDir);
    return { report, written };
  } finally {
    disposeModels(models);
  }
}
