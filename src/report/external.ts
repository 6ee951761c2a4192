/**
 * External validation's part of the report: the classes present, the copies of training images
 * found among the external images (counted per class), the headline metrics both ways — all images,
 * and only those with no copy in training — and, apart and labelled, a temperature re-fitted on the
 * external images themselves. Pure functions from predictions to numbers and text.
 */
import { printable } from '../util/index.js';
import { applyTemperature, calibrationReport, fitTemperature, type CalibrationReport } from './calibration.js';
import { modelSummaryJson, resultsTable, summarize, type EvaluationReport, type ModelSummary, type ReportSection } from './results.js';
import type { RandomSource } from './stats.js';

/** A model's (or the ensemble's) probabilities on the evaluated images, for summaries of a subset. */
export interface ScoredModel {
  name: string;
  kind: 'model' | 'ensemble';
  run?: string;
  probabilities: Float32Array;
}

/** The classes that have at least one of `labels`, in class order. */
export function presentClasses(labels: ArrayLike<number>, numClasses: number): number[] {
  const seen = new Set(Array.from(labels));
  return Array.from({ length: numClasses }, (_, k) => k).filter((k) => seen.has(k));
}

/**
 * Every model's summary on the images at `indices`, scoring the classes present among them; each
 * summary resamples with a fresh generator from `rng`, so the intervals are paired as in eval's table.
 */
export function summarizeSubset(
  models: readonly ScoredModel[],
  labels: ArrayLike<number>,
  indices: readonly number[],
  options: { classNames: readonly string[]; rng: () => RandomSource; resamples: number },
): ModelSummary[] {
  const k = options.classNames.length;
  const subsetLabels = Int32Array.from(indices, (i) => labels[i]!);
  const classes = presentClasses(subsetLabels, k);
  return models.map((m) => {
    const probabilities = new Float32Array(indices.length * k);
    indices.forEach((i, row) => probabilities.set(m.probabilities.subarray(i * k, (i + 1) * k), row * k));
    return summarize(m.name, m.kind, probabilities, subsetLabels, k, { rng: options.rng(), resamples: options.resamples, classNames: options.classNames, classes, ...(m.run === undefined ? {} : { run: m.run }) });
  });
}

/** One external image's copy of a training (or validation) image of one run. */
export interface ExternalCopy {
  /** The external image, and its label there. */
  path: string;
  label: number;
  run: string;
  /** The run's training data folder, and the copied image in it. */
  trainingData: string;
  trainingPath: string;
  trainingLabel: number;
  split: string;
  kind: 'exact' | 'near';
  /** Perceptual-hash distance in bits (0 for an exact copy). */
  distance: number;
}

export interface ExternalLeakage {
  /** Perceptual-hash distance (of 256 bits) at or below which an image is a near copy. */
  nearThreshold: number;
  /** What each run's images were matched against: its training data folder and how many train and val images it has. */
  against: { run: string; data: string; images: number }[];
  /** Per evaluated image (the report's order): its strongest copy over every run, or null. */
  copyKind: ('exact' | 'near' | null)[];
  copies: ExternalCopy[];
}

/** A temperature fitted on the external images themselves: not a validation, reported apart. */
export interface ExternalRefit {
  name: string;
  temperature: number;
  /** The fit ended on the solver's bracket (a model near chance here ends at T = 20). */
  atBracketEdge: boolean;
  /** On the external images: the probabilities as evaluated, and with the re-fitted temperature on top. */
  before: CalibrationReport;
  after: CalibrationReport;
}

export interface ExternalResults {
  dataDir: string;
  present: number[];
  absent: number[];
  /** Top-level files of the folder that are not class folders (not scanned). */
  ignoredFiles: string[];
  leakage: ExternalLeakage;
  /** Every model on the images with no copy in training. */
  withoutCopies: ModelSummary[];
  refitted: ExternalRefit[];
  /** The members are calibrated and the ensemble is their soft vote without its own temperature (fitted on val, which the folder lacks). */
  ensembleUncalibratedVote: boolean;
}

/** Above this fraction of images with a copy in training, the report says the folder is mostly training images. */
export const mostlyTrainingFraction = 0.5;

/** Each model's temperature re-fitted on the external images (its probabilities as evaluated, softmax(log p / T)). */
export function refitOnExternal(models: readonly ModelSummary[], labels: ArrayLike<number>, numClasses: number): ExternalRefit[] {
  return models.map((m) => {
    const { temperature, atBracketEdge } = fitTemperature(m.probabilities, labels, numClasses);
    return { name: m.name, temperature, atBracketEdge, before: calibrationReport(m.probabilities, labels, numClasses), after: calibrationReport(applyTemperature(m.probabilities, numClasses, temperature), labels, numClasses) };
  });
}

interface ClassLeakage {
  label: number;
  images: number;
  exact: number;
  near: number;
  withoutCopies: number;
  /** Images whose copy in training carries another label. */
  otherLabel: number;
}

function leakageByClass(report: EvaluationReport, external: ExternalResults): ClassLeakage[] {
  const otherLabel = new Set(external.leakage.copies.filter((c) => c.trainingLabel !== c.label).map((c) => c.path));
  return external.present.map((label) => {
    const rows = report.images.map((image, i) => ({ image, kind: external.leakage.copyKind[i] })).filter(({ image }) => image.label === label);
    return {
      label,
      images: rows.length,
      exact: rows.filter((r) => r.kind === 'exact').length,
      near: rows.filter((r) => r.kind === 'near').length,
      withoutCopies: rows.filter((r) => r.kind === null).length,
      otherLabel: rows.filter((r) => otherLabel.has(r.image.path)).length,
    };
  });
}

const sum = (rows: readonly ClassLeakage[], pick: (row: ClassLeakage) => number) => rows.reduce((s, r) => s + pick(r), 0);

/** The external section of results.md, `--json` and evaluation.json (`external`), with its warning when the folder is mostly training images. */
export function externalSection(report: EvaluationReport, external: ExternalResults): ReportSection {
  const names = report.classNames;
  const perClass = leakageByClass(report, external);
  const total = { images: report.images.length, exact: sum(perClass, (r) => r.exact), near: sum(perClass, (r) => r.near), withoutCopies: sum(perClass, (r) => r.withoutCopies), otherLabel: sum(perClass, (r) => r.otherLabel) };
  const copied = total.exact + total.near;
  const copiedFraction = total.images === 0 ? 0 : copied / total.images;
  const mostlyTraining = copiedFraction > mostlyTrainingFraction;
  const percent = `${(copiedFraction * 100).toFixed(0)}%`;
  const banner = mostlyTraining
    ? `WARNING: ${copied} of these ${total.images} images (${percent}) are copies of the runs' training or validation images: this folder is mostly training data, not an external test set, and its all-images metrics flatter the models. Only the row without copies (${total.withoutCopies} images) estimates performance on unseen images.`
    : undefined;
  const json = {
    dataDir: external.dataDir,
    classesPresent: external.present.map((k) => names[k]),
    classesAbsent: external.absent.map((k) => names[k]),
    ignoredFiles: external.ignoredFiles,
    leakage: {
      nearThreshold: external.leakage.nearThreshold,
      against: external.leakage.against,
      perClass: perClass.map(({ label, ...counts }) => ({ class: names[label], ...counts })),
      total,
      copiedFraction,
      mostlyTraining,
      copies: external.leakage.copies.map(({ label, trainingLabel, ...copy }) => ({ ...copy, class: names[label], trainingClass: names[trainingLabel] })),
    },
    metrics: {
      all: { images: total.images, models: report.models.map((m) => modelSummaryJson(m, names)) },
      withoutCopies: { images: total.withoutCopies, models: external.withoutCopies.map((m) => modelSummaryJson(m, names)) },
    },
    refittedOnExternal: external.refitted.map((r) => ({ name: r.name, temperature: r.temperature, atBracketEdge: r.atBracketEdge, eceBefore: r.before.ece, eceAfter: r.after.ece, nllBefore: r.before.nll, nllAfter: r.after.nll })),
    ensembleUncalibratedVote: external.ensembleUncalibratedVote,
  };
  const printed = [
    `external folder: ${external.present.map((k) => names[k]).join(', ')}${external.absent.length === 0 ? '' : ` (absent: ${external.absent.map((k) => names[k]).join(', ')})`}`,
    `copies of training images: ${total.exact} exact, ${total.near} near, of ${total.images} images (${percent}); ${total.withoutCopies} without a copy`,
    ...(total.withoutCopies === 0 ? ['no image without a copy in training: no external estimate'] : ['', `the ${total.withoutCopies} images without a copy in training:`, '', resultsTable({ ...report, models: external.withoutCopies })]),
  ];
  return { key: 'external', markdown: externalMarkdown(report, external, perClass, total), ...(banner === undefined ? {} : { banner }), console: printed, json };
}

function externalMarkdown(report: EvaluationReport, external: ExternalResults, perClass: ClassLeakage[], total: Omit<ClassLeakage, 'label'>): string[] {
  const names = report.classNames;
  const leakage = external.leakage;
  const present = external.present.map((k) => `${names[k]} (${perClass.find((r) => r.label === k)?.images ?? 0})`).join(', ');
  const lines = [
    '## External validation',
    '',
    `Every image of the folder, with each run's own eval transform; nothing above was fitted on these images. Classes present: ${present}` +
      (external.absent.length === 0 ? '.' : `; absent: ${external.absent.map((k) => names[k]).join(', ')} (no per-class rows for it; macro-F1 and macro AUC average the classes present).`),
    '',
    '### Copies of training images',
    '',
    `Each image was matched against the train and val images of each run's training data (${leakage.against.map((a) => `\`${printable(a.data)}\`, ${a.images} images`).join('; ')}): ` +
      `an exact copy has the same decoded pixels, a near copy a 256-bit perceptual hash within ${leakage.nearThreshold} bits (a re-encoded, resized or re-exposed copy).`,
    '',
    '| class | images | exact copies | near copies | no copy | copied under another label |',
    '|---|---|---|---|---|---|',
    ...perClass.map((r) => `| ${names[r.label]} | ${r.images} | ${r.exact} | ${r.near} | ${r.withoutCopies} | ${r.otherLabel} |`),
    `| **all** | ${total.images} | ${total.exact} | ${total.near} | ${total.withoutCopies} | ${total.otherLabel} |`,
    '',
  ];
  if (leakage.copies.length > 0) {
    const shown = leakage.copies.slice(0, 20).map((c) => `- \`${printable(c.path)}\`: ${c.kind} copy (${c.distance} bits) of ${c.split} image \`${printable(c.trainingPath)}\` (${names[c.trainingLabel]}) of run \`${printable(c.run)}\``);
    lines.push(...shown, ...(leakage.copies.length > 20 ? [`- … ${leakage.copies.length - 20} more in evaluation.json`] : []), '');
  }
  lines.push('### Headline metrics, both ways', '', `**All ${total.images} images**`, '', resultsTable(report), '', `**The ${total.withoutCopies} images with no copy in training**`, '');
  lines.push(total.withoutCopies === 0 ? 'None: every image has a copy in the training or validation images, so this folder cannot estimate performance on unseen images.' : resultsTable({ ...report, models: external.withoutCopies }), '');
  if (external.ensembleUncalibratedVote) {
    lines.push("The ensemble is the soft vote of the calibrated members without an ensemble temperature: eval fits that on a val split, which an external folder has not.", '');
  }
  if (external.refitted.length > 0) {
    lines.push(
      '### Re-fitted on the external images (not a validation)',
      '',
      'A temperature fitted on these very images, on top of the probabilities above: it shows how far their calibration is off here, and is optimistic by construction. Nothing above uses it.',
      '',
      '| model | T re-fitted here | ECE as evaluated → re-fitted | NLL as evaluated → re-fitted |',
      '|---|---|---|---|',
      ...external.refitted.map((r) => `| ${printable(r.name)} | ${r.temperature.toFixed(3)}${r.atBracketEdge ? ' (edge of the search)' : ''} | ${r.before.ece.toFixed(3)} → ${r.after.ece.toFixed(3)} | ${r.before.nll.toFixed(4)} → ${r.after.nll.toFixed(4)} |`),
      '',
    );
  }
  return lines;
}
