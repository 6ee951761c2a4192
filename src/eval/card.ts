/**
 * A model card: model-card.json, and model-card.md rendered from it alone (card-markdown.ts). It is
 * filled from osteo's own records — each run's config.json, split.json, calibration.json, its
 * checkpoint's state and weights, the dataset's index.csv and splits.csv, and `osteo eval`'s
 * evaluation.json — so every number in it is a number of one of those files; a human writes only
 * what no file holds (the clinical setting, the reference standard, ethics, funding), and the card
 * says so where. card-files.ts writes it; every export carries one (export.ts, web-export.ts), and
 * `osteo card` writes one alone (card-folder.ts).
 */
import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { classNames, dataFlow, evalTransformSpec, indexPath, readIndex, readSplitManifest, splitManifestPath, type DataFlow, type EvalTransformSpec } from '../data/index.js';
import { getModel, weightsTagOfFile, type ModelName } from '../models/index.js';
import { manifestSha256, openRun, readCheckpointState, readRunConfigJson, readRunSplit, runWeightsPath, type CheckpointName } from '../runs/index.js';
import { osteoVersion, sha256File } from '../util/index.js';
import { checklists, type CardSection } from './card-checklist.js';
import { readCardEvaluations, type CardEvaluation } from './card-evaluation.js';
import { exportCalibration, type ExportCalibration } from './export-calibration.js';
import { displayNames } from './inference.js';
import { pathFromExport } from './paths.js';
import { researchDisclaimer } from './predict.js';

export interface CardOptions {
  runs: string[];
  /** Which checkpoint of every run (default best). */
  checkpoint?: CheckpointName;
  /** `osteo eval` report folders of exactly these runs; without: their default test report, when it exists. */
  reports?: string[];
  /** The folder the card goes into: every path in the card is relative to it. */
  dir: string;
  /** The export the card goes with. */
  export?: { format: string; files: string[] };
}

export interface CardModel {
  /** The name `osteo eval` and `osteo predict` give it. */
  name: string;
  model: ModelName;
  run: string;
  /** torchvision's parameter count of the architecture (3 classes, its default head). */
  parameters: number;
  numClasses: number;
  imageSize: number;
  preprocessing: EvalTransformSpec;
  /** The weights training started from: a torchvision tag (its source and hash prefix), another file, or none (random initialisation). */
  initialWeights: { tag: string; file: string; source: string; sha256Prefix: string; licence: string } | { tag: null; file: string | null };
  weights: { checkpoint: CheckpointName; file: string; sha256: string };
  /** The checkpoint's record: the epoch and step it was saved at and the validation metric that chose it. */
  selection: { epoch: number; step: number; metric: string; value: number } | null;
  /** The resolved config the run was trained with (config.json), its folders relative to the card and its initial weights by file name. */
  recipe: Record<string, unknown>;
  calibration: ExportCalibration | null;
}

export interface CardData {
  folder: string;
  /** The models trained on it. */
  models: string[];
  /** SHA-256 of its splits.csv now, and as the runs recorded it when training started (null: no split.json). */
  manifestSha256: string | null;
  trainedManifestSha256: string | null;
  /** The index the flow is counted from (the folder the class folders are in), or null when there is none. */
  index: { folder: string; sha256: string } | null;
  /** The folder is osteo's synthetic phantom (phantom.json beside its index). */
  phantom: boolean;
  flow: DataFlow | null;
}

export interface CardChecklistItem {
  id: string;
  title: string;
  /** The card section that answers it, or null: a human must. */
  section: string | null;
}

export interface ModelCard {
  format: 'osteo-model-card';
  version: 1;
  osteoVersion: string;
  createdAt: string;
  title: string;
  intendedUse: { intended: string[]; outOfScope: string[] };
  models: CardModel[];
  data: CardData[];
  /** Reports on the runs' own data (internal) and on other data (external), from each report's evaluation.json. */
  evaluations: CardEvaluation[];
  /** Why there is no internal evaluation, when there is none. */
  notEvaluated: string | null;
  limitations: string[];
  checklists: { name: string; reference: string; items: CardChecklistItem[] }[];
  /** What a human must write: no file osteo reads holds it. */
  human: string[];
  export: { format: string; files: string[] } | null;
}

const intendedUse = {
  intended: [
    'Research on classifying knee radiographs as Normal, Osteopenia or Osteoporosis: comparing architectures, recipes and data protocols.',
    `${researchDisclaimer}`,
  ],
  outOfScope: [
    'Diagnosis, screening or treatment decisions for any patient: osteo is not a medical device and has no regulatory clearance.',
    'Any use without a clinician reviewing every prediction.',
    'Images unlike the training data (other joints, projections, modalities, scanners or populations) without an external validation on such images.',
  ],
};

const human = [
  'Clinical context, target population and intended users (who is imaged, where in the care pathway, why).',
  'The reference standard: how the Normal, Osteopenia and Osteoporosis labels were assigned (e.g. DXA T-score), by whom, blinded to what.',
  'Where and when the images were acquired (centres, devices, dates) and the eligibility criteria.',
  'Ethics approval, funding, conflicts of interest, protocol and registration.',
];

async function initialWeightsOf(config: Record<string, unknown>): Promise<CardModel['initialWeights']> {
  const pretrained = typeof config.pretrained === 'string' ? config.pretrained : undefined;
  if (pretrained === undefined) return { tag: null, file: null };
  const tag = weightsTagOfFile(basename(pretrained));
  if (tag === undefined) return { tag: null, file: basename(pretrained) };
  return { tag: tag.name, file: tag.fileName, source: tag.sourceUrl, sha256Prefix: tag.sha256Prefix, licence: tag.licence };
}

function selectionOf(state: unknown): CardModel['selection'] {
  const s = state as { epoch?: unknown; step?: unknown; metric?: unknown; value?: unknown } | null;
  if (s === null || typeof s.epoch !== 'number' || typeof s.step !== 'number' || typeof s.metric !== 'string' || typeof s.value !== 'number') return null;
  return { epoch: s.epoch, step: s.step, metric: s.metric, value: s.value };
}

async function cardModel(run: string, name: string, checkpoint: CheckpointName, dir: string): Promise<CardModel> {
  const info = await openRun(run, checkpoint);
  const { json } = await readRunConfigJson(run);
  const config = json as Record<string, unknown>;
  const weightsFile = runWeightsPath(info.dir, checkpoint);
  const sha256 = await sha256File(weightsFile);
  const split = await readRunSplit(info.dir);
  // Folders as seen from the card, the initial weights by file name: a shared card names no machine's folders.
  const located = {
    out: pathFromExport(dir, info.dir),
    ...(split === undefined ? {} : { data: pathFromExport(dir, split.data) }),
    ...(typeof config.pretrained === 'string' ? { pretrained: basename(config.pretrained) } : {}),
  };
  return {
    name,
    model: info.model,
    run: pathFromExport(dir, info.dir),
    parameters: getModel(info.model).parameterCount,
    numClasses: info.numClasses,
    imageSize: info.imageSize,
    preprocessing: evalTransformSpec(info.transform),
    initialWeights: await initialWeightsOf(config),
    weights: { checkpoint, file: pathFromExport(dir, weightsFile), sha256 },
    selection: selectionOf(await readCheckpointState(info.dir, checkpoint)),
    recipe: { ...config, ...located },
    calibration: await exportCalibration(info.dir, sha256),
  };
}

/** The folder holding a dataset's class folders (a split view links to its source's): where its index and phantom.json are. */
async function indexFolderOf(dataDir: string): Promise<string> {
  const classFolder = join(dataDir, classNames[0]);
  return existsSync(classFolder) ? dirname(await realpath(classFolder)) : dataDir;
}

async function cardData(dataDir: string, models: string[], trained: string | null, dir: string): Promise<CardData> {
  const hasManifest = existsSync(splitManifestPath(dataDir));
  const indexFolder = await indexFolderOf(dataDir);
  const indexFile = indexPath(indexFolder);
  const indexed = existsSync(indexFile);
  return {
    folder: pathFromExport(dir, dataDir),
    models,
    manifestSha256: hasManifest ? await manifestSha256(dataDir) : null,
    trainedManifestSha256: trained,
    index: indexed ? { folder: pathFromExport(dir, indexFolder), sha256: await sha256File(indexFile) } : null,
    phantom: existsSync(join(indexFolder, 'phantom.json')),
    flow: indexed && hasManifest ? dataFlow(await readIndex(indexFolder), await readSplitManifest(dataDir)) : null,
  };
}

/** Each dataset the runs were trained on (split.json's folder; config.json's without one), with the models trained on it. */
async function cardDatasets(runs: readonly string[], names: readonly string[], dir: string): Promise<CardData[]> {
  const byFolder = new Map<string, { models: string[]; trained: string | null }>();
  for (const [i, run] of runs.entries()) {
    const record = await readRunSplit(run);
    const folder = record?.data ?? resolve(String(((await readRunConfigJson(run)).json as { data?: unknown }).data ?? '.'));
    const entry = byFolder.get(folder) ?? { models: [], trained: record?.manifestSha256 ?? null };
    entry.models.push(names[i]!);
    byFolder.set(folder, entry);
  }
  const data: CardData[] = [];
  for (const [folder, entry] of byFolder) data.push(await cardData(folder, entry.models, entry.trained, dir));
  return data;
}

/** Facts of the records that limit what the numbers mean; none is a guess. */
function limitationsOf(card: Pick<ModelCard, 'models' | 'data' | 'evaluations'>): string[] {
  const lines: string[] = [];
  const external = card.evaluations.filter((e) => e.role === 'external');
  // Split views of one dataset (the published protocol's, a CV fold's) share its index: one source.
  const sources = [...new Set(card.data.map((d) => d.index?.folder ?? d.folder))];
  if (sources.length === 1 && external.length === 0) {
    lines.push(`Trained and evaluated on a single source (${sources[0]}) with no external validation: performance on other sites, devices or populations is unknown.`);
  }
  for (const data of card.data) {
    if (data.phantom) lines.push(`${data.folder} is osteo's synthetic phantom (rendered knee-like images): its numbers describe the phantom, not radiographs, and say nothing about clinical performance.`);
    const flow = data.flow;
    if (flow !== null && flow.leakedTestImages > 0) {
      const tests = flow.split.test.reduce((sum, n) => sum + n, 0);
      lines.push(
        `${flow.leakedTestImages} of the ${tests} test images of ${data.folder} have an identical copy in its training split (a split without de-duplication, as the published protocol's): its test numbers are optimistic.`,
      );
    }
    if (data.trainedManifestSha256 !== null && data.manifestSha256 !== data.trainedManifestSha256) {
      lines.push(`${data.folder}/splits.csv changed since ${data.models.join(', ')} started training: the flow above counts the current split, not the one trained on.`);
    }
  }
  for (const m of card.models) {
    lines.push(
      `${m.name} sees each film resized to ${m.preprocessing.resize} px on its shorter side and centre-cropped to ${m.preprocessing.crop}×${m.preprocessing.crop} px: finer detail is lost, and the crop leaves out the edges of a non-square film.`,
    );
    if (m.calibration === null) lines.push(`${m.name} is not calibrated: its probabilities are softmax outputs, not fitted to observed frequencies (run \`osteo calibrate\`).`);
    else if (!m.calibration.applied) lines.push(`${m.name}: ${m.calibration.reason}.`);
  }
  if (!card.evaluations.some((e) => e.subgroups !== null)) {
    lines.push('No subgroup results (age, sex, site, device): whether the model performs equally across patient groups is unknown.');
  }
  lines.push("The labels are the dataset's class folders: osteo records no reference standard for them.");
  return lines;
}

/** Whether a section holds data: an item it answers counts as covered only then. */
function sectionAnswers(section: CardSection, card: Pick<ModelCard, 'evaluations' | 'data'>): boolean {
  if (section === 'performance') return card.evaluations.some((e) => e.role === 'internal');
  if (section === 'external') return card.evaluations.some((e) => e.role === 'external');
  if (section === 'operatingPoints') return card.evaluations.some((e) => e.operatingPoints !== null);
  if (section === 'subgroups') return card.evaluations.some((e) => e.subgroups !== null);
  if (section === 'data') return card.data.some((d) => d.flow !== null);
  return true;
}

export async function buildModelCard(options: CardOptions): Promise<ModelCard> {
  const checkpoint = options.checkpoint ?? 'best';
  const runs = options.runs.map((run) => resolve(run));
  const infos = await Promise.all(runs.map((run) => openRun(run, checkpoint)));
  const names = displayNames(infos.map((info) => ({ model: info.model, run: info.dir, weightsFile: runWeightsPath(info.dir, checkpoint) })));
  const models: CardModel[] = [];
  for (const [i, run] of runs.entries()) models.push(await cardModel(run, names[i]!, checkpoint, options.dir));
  const data = await cardDatasets(runs, names, options.dir);
  const trainedOn = (await Promise.all(runs.map(readRunSplit))).flatMap((record) => (record === undefined ? [] : [record.data]));
  const { evaluations, notEvaluated } = await readCardEvaluations({ runs, checkpoint, reports: options.reports, trainedOn, dir: options.dir });
  const facts = { models, data, evaluations };
  return {
    format: 'osteo-model-card',
    version: 1,
    osteoVersion,
    createdAt: new Date().toISOString(),
    title: `Model card: ${names.join(' + ')}${names.length > 1 ? ' and their soft-vote ensemble' : ''}`,
    intendedUse,
    models,
    data,
    evaluations,
    notEvaluated,
    limitations: limitationsOf(facts),
    checklists: checklists.map((list) => ({
      name: list.name,
      reference: list.reference,
      items: list.items.map((item) => ({ id: item.id, title: item.title, section: item.section !== undefined && sectionAnswers(item.section, facts) ? item.section : null })),
    })),
    human,
    export: options.export ?? null,
  };
}
