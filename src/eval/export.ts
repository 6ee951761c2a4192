/**
 * `osteo export`: a run's best weights as a PyTorch `.pth`, a `.safetensors`, a tfjs LayersModel, or
 * an ONNX graph with torchvision-keyed initializers (docs/onnx.md), and the files the dashboard loads
 * (its table below: file, architecture, head). Every export
 * validates the weights by loading them strictly into the architecture first and writes
 * `metadata.json` (with the run's temperature, when it applies to these weights) and the model card
 * (model-card.json and model-card.md, card.ts) beside them.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { activateBackend, type BackendHandle } from '../backend/index.js';
import { classNames, evalTransformSpec, imagenetNormalization, type EvalTransform, type EvalTransformSpec } from '../data/index.js';
import {
  UserError,
  listSome,
  listTree,
  osteoVersion,
  readOwnedRecord,
  recoverStagedFolder,
  replaceFolder,
  sha256File,
  stageFolder,
  unrecordedFiles,
  writeFileAtomic,
  writeJsonAtomic,
  writeOwnedRecord,
  type OwnedRecord,
} from '../util/index.js';
import { getModel, onnxInputName, onnxOutputName, type HeadKind, type ModelEntry, type ModelName } from '../models/index.js';
import { loadRunModel, openRun, readCheckpointState, runExportDir, runWeightsPath, type CheckpointName } from '../runs/index.js';
import { buildWithWeights, modelToOnnx, modelToStateDict, onnxIrVersion, readStateDict, writePth, writeSafetensors } from '../weights/index.js';
import { calibrationNotes, calibrationWarnings, exportCalibration, type ExportCalibration } from './export-calibration.js';
import { buildModelCard } from './card.js';
import { cardFiles, writeModelCardFiles } from './card-files.js';
import { pathFromExport } from './paths.js';
import { saveLayersModelToDir } from './tfjs-io.js';

export const exportFormats = ['pth', 'safetensors', 'tfjs', 'onnx'] as const;
export type ExportFormat = (typeof exportFormats)[number];

/** One file the dashboard loads: its name, the model it holds, and the module the dashboard builds for it. */
export interface DashboardFile {
  file: string;
  model: ModelName;
  /** The head of that module (a head kind of the architecture): the run's weights must load into it strictly. */
  head: HeadKind;
  /** The torchvision code the dashboard runs to build the module, for metadata.json. */
  architecture: string;
}

/**
 * The dashboard's contract: a PyTorch + torchvision app that loads exactly these files with
 * `torch.load(weights_only=True)` and a strict `load_state_dict` into these modules.
 */
export const dashboardFiles: readonly DashboardFile[] = [
  { file: 'sydney_best_model.pth', model: 'resnet18', head: 'torchvision', architecture: 'torchvision.models.resnet18(weights=None); fc = nn.Linear(512, 3)' },
  { file: 'resnet50_best_model.pth', model: 'resnet50', head: 'torchvision', architecture: 'torchvision.models.resnet50(weights=None); fc = nn.Linear(2048, 3)' },
  {
    file: 'best_osteoporosis_model.pth',
    model: 'efficientnet_b3',
    head: 'mlp',
    architecture:
      'torchvision.models.efficientnet_b3(weights=None); classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(1536, 512), nn.ReLU(), nn.Dropout(0.3), nn.Linear(512, 3))',
  },
];

/** The dashboard file that holds a model, if the dashboard loads one. */
export function dashboardFileOf(model: string): DashboardFile | undefined {
  return dashboardFiles.find((entry) => entry.model === model);
}

export type DashboardModel = ModelEntry & { dashboard: DashboardFile };

/** The graph file of an ONNX export (its batch dimension is symbolic, its image size the run's). */
export const onnxModelFile = 'model.onnx';

/** The architectures the dashboard loads (docs/contracts.md, *The dashboard*), in the order of its table, each with its file. */
export function dashboardModels(): DashboardModel[] {
  return dashboardFiles.map((dashboard) => ({ ...getModel(dashboard.model), dashboard }));
}

/** The `osteo export --dashboard` flag that names a model's run: `--resnet18`, `--efficientnet-b3`. */
export function dashboardRunFlag(model: string): string {
  return `--${model.replaceAll('_', '-')}`;
}

/** What metadata.json says the module is: the dashboard's own architecture text where there is one (3 classes). */
function architectureOf(model: ModelName, numClasses: number): string {
  const dashboard = dashboardFileOf(model);
  if (dashboard === undefined) return `osteo's ${model} with ${numClasses} outputs (torchvision state-dict keys)`;
  return numClasses === 3 ? dashboard.architecture : `${dashboard.architecture} — but with ${numClasses} outputs instead of 3`;
}

/**
 * The preprocessing the dashboard applies to every model, whatever its weights' tag (ResNet50's V2
 * weights evaluate at 232 in torchvision; the dashboard feeds them 256 as it does the others).
 */
export const dashboardTransform = { resize: 256, crop: 224, interpolation: 'bilinear', mean: imagenetNormalization.mean, std: imagenetNormalization.std } as const;

export interface ExportMetadata {
  osteoVersion: string;
  createdAt: string;
  classes: readonly string[];
  model: ModelName;
  architecture: string;
  numClasses: number;
  imageSize: number;
  preprocessing: EvalTransformSpec;
  input: string;
  output: string;
  /** The training run's record of the exported checkpoint (epoch, validation metrics), if it kept one. */
  metrics: unknown;
  /** The run and its weights file as paths relative to the export folder, and the weights' SHA-256. */
  source: { run: string; weights: string; sha256: string };
  files: string[];
  /** SHA-256 of each file in `files`: which file this metadata describes. */
  sha256?: Record<string, string>;
  notes: string[];
  /** ONNX exports: the graph's interface and versions, for a runtime to wire its session by. */
  onnx?: OnnxInterface;
  /** The run's temperature and the hash of the weights it was fitted on (null: not calibrated); applied only to the weights it was fitted on. */
  calibration: ExportCalibration | null;
}

export interface OnnxInterface {
  opset: number;
  irVersion: number;
  input: { name: string; shape: (number | string)[]; layout: 'NCHW' };
  output: { name: string; shape: (number | string)[] };
}

export async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** The run's record of the exported checkpoint (epoch, validation metrics), or null when it kept none. */
export function readExportedState(run: ValidatedRun): Promise<unknown> {
  return readCheckpointState(run.run, run.checkpoint);
}

export interface ValidatedRun {
  run: string;
  model: ModelName;
  imageSize: number;
  numClasses: number;
  transform: EvalTransform;
  weightsFile: string;
  /** Which of the run's checkpoints the weights are. */
  checkpoint: CheckpointName;
  /** Built (portable when asked) and strictly loaded; the caller disposes it. */
  layersModel: import('@tensorflow/tfjs-layers').LayersModel;
}

/**
 * Open a run and load one of its checkpoints (default best) strictly into its architecture: the
 * weights are proven to fit. `portable` builds the stock-layers variant (tfjs export) and loads the
 * same weights into it; `head` builds that head of the architecture (the dashboard's module).
 */
export async function validatedRun(dir: string, options: { portable?: boolean; head?: HeadKind; checkpoint?: CheckpointName } = {}): Promise<ValidatedRun> {
  const which = options.checkpoint ?? 'best';
  if (!options.portable && options.head === undefined) {
    const run = await loadRunModel(dir, which);
    const { info } = run;
    return { run: info.dir, model: info.model, imageSize: info.imageSize, numClasses: info.numClasses, transform: run.transform, weightsFile: runWeightsPath(info.dir, which), checkpoint: which, layersModel: run.model };
  }
  const info = await openRun(dir, which);
  const weightsFile = runWeightsPath(info.dir, which);
  const entry = getModel(info.model);
  const build = { numClasses: info.numClasses, imageSize: info.imageSize, portable: options.portable ?? false, head: options.head ?? entry.defaultHead };
  const { model: layersModel } = buildWithWeights(entry, await readStateDict(weightsFile), build);
  return { run: info.dir, model: entry.name, imageSize: info.imageSize, numClasses: info.numClasses, transform: info.transform, weightsFile, checkpoint: which, layersModel };
}

export { pathFromExport };

async function metadataFor(run: ValidatedRun, exportDir: string, files: string[], input: string, notes: string[] = []): Promise<ExportMetadata> {
  const weightsSha256 = await sha256(run.weightsFile);
  const calibration = await exportCalibration(run.run, weightsSha256);
  return {
    osteoVersion,
    createdAt: new Date().toISOString(),
    classes: run.numClasses === classNames.length ? classNames : Array.from({ length: run.numClasses }, (_, i) => `class ${i}`),
    model: run.model,
    architecture: architectureOf(run.model, run.numClasses),
    numClasses: run.numClasses,
    imageSize: run.imageSize,
    preprocessing: evalTransformSpec(run.transform),
    input,
    output: `logits [N, ${run.numClasses}] in class order; softmax gives the probabilities`,
    metrics: await readExportedState(run),
    source: { run: pathFromExport(exportDir, run.run), weights: pathFromExport(exportDir, run.weightsFile), sha256: weightsSha256 },
    files,
    notes: [...notes, ...calibrationNotes(calibration)],
    calibration,
  };
}

/**
 * Every export folder holds `.osteo-export.json`: the path and SHA-256 of each file osteo export
 * wrote there (docs/contracts.md, *What an export folder holds*). A file an export would replace or
 * remove must be named in it with its current content; anything else is the user's, and the export
 * is refused by name. A metadata.json's own `files` list is not trusted for this: any JSON can say it.
 */
export const exportRecordFile = '.osteo-export.json';
const exportRecordFormat = 'osteo-export';

function readExportRecord(dir: string): Promise<OwnedRecord> {
  return readOwnedRecord(join(dir, exportRecordFile), exportRecordFormat);
}

/** The files of the export folder `dir` that its record does not name with their content (none when `dir` is absent). */
export async function foreignExportFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return unrecordedFiles(dir, await readExportRecord(dir), (await readdir(dir)).filter((entry) => entry !== exportRecordFile));
}

function refuseForeign(dir: string, foreign: readonly string[], what = 'choose an empty or new --out folder'): void {
  if (foreign.length > 0) throw new UserError(`${dir} holds files osteo export did not write (${listSome(foreign)}), or changed since: ${what}; nothing was changed`);
}

/** The hashes of `files` (relative to `dir`). */
async function hashesOf(dir: string, files: readonly string[]): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for (const file of files) hashes[file] = await sha256File(join(dir, file));
  return hashes;
}

/**
 * A whole export folder written beside `target` and switched in (ARCHITECTURE.md, *Staged writes*): `fill` writes into a
 * sibling staging folder; then the previous export (if any) is moved aside, the new one renamed into
 * place and the previous one removed. An interrupted export leaves the previous one whole — never a
 * mix of old and new weight shards. A `target` holding any file its record does not name with that
 * content is refused, since switching would delete it.
 */
export async function writeFolderStaged(target: string, fill: (staging: string) => Promise<void>): Promise<void> {
  if (existsSync(target)) {
    if (!(await stat(target)).isDirectory()) throw new UserError(`${target} exists and is not a folder: choose another --out`);
    const record = await readExportRecord(target);
    refuseForeign(target, await unrecordedFiles(target, record, (await readdir(target)).filter((entry) => entry !== exportRecordFile)));
  }
  await recoverStagedFolder(target);
  await replaceFolder(target, async (staging) => {
    await fill(staging);
    const files = (await listTree(staging)).filter((file) => file !== exportRecordFile);
    await writeOwnedRecord(join(staging, exportRecordFile), { format: exportRecordFormat, version: 1, files: await hashesOf(staging, files) });
  });
}

/**
 * Files of fixed names (`names`) written into a staging folder beside `dir`, then each renamed into `dir`
 * (metadata.json last): for folders that hold other things too (the dashboard's own app), where the
 * folder cannot be swapped whole. Nothing reaches `dir` until every file is written and validated,
 * and a file of `dir` under one of those names that the folder's record does not name with its
 * content (the user's own, or one changed since) is refused before anything is written.
 */
export async function writeFilesStaged(dir: string, names: readonly string[], fill: (staging: string) => Promise<void>): Promise<string[]> {
  if (existsSync(dir) && !(await stat(dir)).isDirectory()) throw new UserError(`${dir} exists and is not a folder: choose another --out`);
  refuseForeign(dir, await unrecordedFiles(dir, await readExportRecord(dir), names), 'move them aside or choose another --out');
  const staged = await stageFolder(dir);
  try {
    await fill(staged.dir);
    const record = await readExportRecord(dir);
    refuseForeign(dir, await unrecordedFiles(dir, record, names), 'move them aside or choose another --out');
    const hashes = await hashesOf(staged.dir, names);
    await mkdir(dir, { recursive: true });
    const recordPath = join(dir, exportRecordFile);
    // The new hashes are recorded before the files are switched in, so a kill between the renames leaves none unrecognised.
    await writeOwnedRecord(recordPath, { ...record, pending: hashes });
    const ordered = [...names.filter((file) => file !== 'metadata.json'), ...names.filter((file) => file === 'metadata.json')];
    for (const file of ordered) await rename(join(staged.dir, file), join(dir, file));
    const files = Object.fromEntries(Object.entries(record.files).filter(([file]) => existsSync(join(dir, file))));
    await writeOwnedRecord(recordPath, { format: exportRecordFormat, version: 1, files: { ...files, ...hashes } });
    return [...names];
  } finally {
    await staged.abandon();
  }
}

/** The model card of `runs` (card.ts) into an export's staging folder; its paths are seen from the export folder `dir`. */
export async function writeExportCard(staging: string, dir: string, runs: string[], checkpoint: CheckpointName | undefined, exported: { format: string; files: string[] }): Promise<void> {
  await writeModelCardFiles(staging, await buildModelCard({ runs, checkpoint, dir, export: exported }));
}

/**
 * The weight files an earlier pth/safetensors export left in `dir` beside `file`, which the new
 * metadata.json must describe too: only when they hold the same checkpoint (one metadata.json
 * describes one set of weights); an export of other weights there is refused.
 */
async function companionExports(dir: string, file: string, sourceSha256: string): Promise<{ files: string[]; sha256: Record<string, string> }> {
  const metadataFile = join(dir, 'metadata.json');
  if (!existsSync(metadataFile)) return { files: [], sha256: {} };
  const record = await readExportRecord(dir);
  if ((await unrecordedFiles(dir, record, ['metadata.json'])).length > 0) return { files: [], sha256: {} }; // refused by writeFilesStaged, naming it
  const previous = JSON.parse(await readFile(metadataFile, 'utf8')) as Partial<ExportMetadata>;
  const listed = Array.isArray(previous.files) ? previous.files.filter((f): f is string => typeof f === 'string' && f !== file) : [];
  const others = listed.filter((f) => existsSync(join(dir, f)) && record.files[f] !== undefined);
  if (others.length === 0) return { files: [], sha256: {} };
  if (previous.source?.sha256 !== sourceSha256) {
    throw new UserError(
      `${dir} holds ${others.join(', ')}, exported from other weights (${previous.source?.run ?? 'another run'}, SHA-256 ${String(previous.source?.sha256).slice(0, 12)}…): ` +
        `its metadata.json describes those; export ${file} into another --out folder`,
    );
  }
  return { files: others, sha256: Object.fromEntries(others.map((f) => [f, record.files[f]!])) };
}

export interface ExportResult {
  dir: string;
  files: string[];
  metadata: unknown;
  /** Each run whose calibration.json was fitted on other weights, and is not applied (the metadata says so too). */
  warnings: string[];
}

/** `osteo export --run DIR --format F [--out DIR]`; default out: RUN/export/F (web exports: exportWeb in web-export.ts). */
export async function exportRun(options: { backend: BackendHandle; run: string; format: ExportFormat; outDir?: string; checkpoint?: CheckpointName }): Promise<ExportResult> {
  await activateBackend(options.backend);
  if (!exportFormats.includes(options.format)) throw new UserError(`unknown export format '${options.format}': choose one of ${exportFormats.join(', ')}`);
  const outDir = options.outDir ?? runExportDir(options.run, options.format);
  // tfjs exports build from stock layers only, so a web app loads them without osteo's classes.
  const run = await validatedRun(options.run, { portable: options.format === 'tfjs', checkpoint: options.checkpoint });
  try {
    let files: string[] = [];
    let input: string;
    let metadata: ExportMetadata | undefined;
    if (options.format === 'tfjs') {
      input = `float32 [N, ${run.imageSize}, ${run.imageSize}, 3] (NHWC), preprocessed as below`;
      // Shard names depend on the model's size: only a whole-folder switch keeps old shards out.
      await writeFolderStaged(outDir, async (staging) => {
        files = (await saveLayersModelToDir(run.layersModel, staging, `osteo ${osteoVersion}`)).files;
        metadata = await metadataFor(run, outDir, files, input);
        metadata.sha256 = await hashesOf(staging, files);
        await writeJsonAtomic(join(staging, 'metadata.json'), metadata);
        await writeExportCard(staging, outDir, [options.run], options.checkpoint, { format: 'tfjs', files: [...files, 'metadata.json'] });
      });
    } else if (options.format === 'onnx') {
      input = `float32 [N, 3, ${run.imageSize}, ${run.imageSize}] (NCHW, torchvision) named '${onnxInputName}', preprocessed as below`;
      files = [onnxModelFile];
      await writeFolderStaged(outDir, async (staging) => {
        metadata = await metadataFor(run, outDir, files, input);
        const props = { classes: JSON.stringify(metadata.classes), preprocessing: JSON.stringify(metadata.preprocessing), model: run.model };
        const { bytes, graph } = await modelToOnnx(run.layersModel, run.model, props);
        metadata.output = `logits [N, ${run.numClasses}] named '${onnxOutputName}', in class order; softmax gives the probabilities`;
        metadata.onnx = {
          opset: graph.opset,
          irVersion: onnxIrVersion,
          input: { name: onnxInputName, shape: [...graph.inputs[0]!.shape], layout: 'NCHW' },
          output: { name: onnxOutputName, shape: [...graph.outputs[0]!.shape] },
        };
        await writeFileAtomic(join(staging, onnxModelFile), bytes);
        metadata.sha256 = await hashesOf(staging, files);
        await writeJsonAtomic(join(staging, 'metadata.json'), metadata);
        await writeExportCard(staging, outDir, [options.run], options.checkpoint, { format: 'onnx', files: [...files, 'metadata.json'] });
      });
    } else {
      const format = options.format;
      input = `float32 [N, 3, ${run.imageSize}, ${run.imageSize}] (NCHW, torchvision), preprocessed as below`;
      const file = `${run.model}.${format}`;
      files = [file];
      // A pth and a safetensors export of the same weights may share a folder: its one metadata.json describes both.
      const companions = await companionExports(outDir, file, await sha256(run.weightsFile));
      await writeFilesStaged(outDir, [file, 'metadata.json', ...cardFiles], async (staging) => {
        const dict = await modelToStateDict(run.layersModel, run.model);
        if (format === 'pth') await writePth(join(staging, file), dict);
        else await writeSafetensors(join(staging, file), dict, { format: 'pt', osteo: osteoVersion, model: run.model });
        metadata = await metadataFor(run, outDir, [...companions.files, file].sort(), input);
        metadata.sha256 = { ...companions.sha256, ...(await hashesOf(staging, [file])) };
        await writeJsonAtomic(join(staging, 'metadata.json'), metadata);
        await writeExportCard(staging, outDir, [options.run], options.checkpoint, { format, files: [...metadata.files, 'metadata.json'] });
      });
    }
    return { dir: outDir, files: [...files, 'metadata.json', ...cardFiles], metadata, warnings: calibrationWarnings([[run.model, metadata!.calibration]]) };
  } finally {
    run.layersModel.dispose();
  }
}

export interface DashboardExportOptions {
  /** The backend the command chose: the runs' models are built and checked on it. */
  backend: BackendHandle;
  dir: string;
  /** The training run for each architecture the dashboard loads, by model name (`resnet18: 'checkpoints/resnet18'`). */
  runs: Readonly<Record<string, string | undefined>>;
  /** Which checkpoint of every run (default best). */
  checkpoint?: CheckpointName;
}

/**
 * A run for every dashboard model and for nothing else: a model without a dashboard file is named
 * as such, with the files the dashboard does load. Messages name the CLI flags (dashboardRunFlag).
 */
function dashboardRuns(runs: DashboardExportOptions['runs']): [DashboardModel, string][] {
  const models = dashboardModels();
  const loads = models.map((entry) => `${entry.dashboard.file} (${entry.name})`).join(', ');
  for (const [name, dir] of Object.entries(runs)) {
    if (dir !== undefined && dashboardFileOf(getModel(name).name) === undefined) throw new UserError(`${name} has no dashboard file: the dashboard loads ${loads}`);
  }
  const missing = models.filter((entry) => runs[entry.name] === undefined);
  if (missing.length > 0) throw new UserError(`--dashboard needs ${missing.map((entry) => dashboardRunFlag(entry.name)).join(', ')} RUN`);
  return models.map((entry) => [entry, runs[entry.name]!]);
}

/**
 * The files the dashboard loads, under exactly its names, each validated by a strict load into the
 * dashboard's architecture (3 classes, the head its table names), plus one metadata.json for all of
 * them. A run whose transform is not the dashboard's 256/224 is exported with a note saying so.
 */
export async function exportDashboard(options: DashboardExportOptions): Promise<ExportResult> {
  const runs = dashboardRuns(options.runs);
  await activateBackend(options.backend);
  let metadata: unknown;
  // All three files are validated and written before any reaches the dashboard's folder.
  const files = await writeFilesStaged(options.dir, [...runs.map(([entry]) => entry.dashboard.file), 'metadata.json', ...cardFiles], async (staging) => {
    const models: Record<string, ExportMetadata> = {};
    for (const [expected, dir] of runs) {
      const flag = dashboardRunFlag(expected.name);
      const file = expected.dashboard.file;
      const opened = await openRun(dir, options.checkpoint);
      if (opened.model !== expected.name) throw new UserError(`${flag} ${dir} is a ${opened.model} run; the dashboard's ${file} must be a ${expected.name}`);
      if (opened.numClasses !== 3) throw new UserError(`${flag} ${dir} has ${opened.numClasses} classes; the dashboard builds 3-class heads`);
      const run = await validatedRun(dir, { checkpoint: options.checkpoint, head: expected.dashboard.head });
      try {
        await writePth(join(staging, file), (await modelToStateDict(run.layersModel, run.model)));
        const notes: string[] = [];
        if (run.transform.resize !== dashboardTransform.resize || run.transform.crop !== dashboardTransform.crop) {
          notes.push(
            `trained on resize ${run.transform.resize} / crop ${run.transform.crop}, but the dashboard feeds resize ${dashboardTransform.resize} / crop ${dashboardTransform.crop}: ` +
              'the network accepts any size, its accuracy may differ from the evaluation',
          );
        }
        models[file] = await metadataFor(run, options.dir, [file], 'float32 [N, 3, H, W] (NCHW), preprocessed as below', notes);
        models[file]!.sha256 = await hashesOf(staging, [file]);
      } finally {
        run.layersModel.dispose();
      }
    }
    metadata = {
      osteoVersion,
      createdAt: new Date().toISOString(),
      classes: classNames,
      loading: 'torch.load(path, map_location=device, weights_only=True); model.load_state_dict(state_dict, strict=True)',
      ensemble: `mean of the ${countWord(runs.length)} models' softmax probabilities; argmax; confidence = that mean probability`,
      models,
    };
    await writeJsonAtomic(join(staging, 'metadata.json'), metadata);
    const written = [...runs.map(([entry]) => entry.dashboard.file), 'metadata.json'];
    await writeExportCard(staging, options.dir, runs.map(([, dir]) => dir), options.checkpoint, { format: 'dashboard', files: written });
  });
  const models = Object.values((metadata as { models: Record<string, ExportMetadata> }).models);
  return { dir: options.dir, files, metadata, warnings: calibrationWarnings(models.map((m) => [m.model, m.calibration])) };
}

/** Small counts in words, as metadata.json spells the dashboard's ensemble ("the three models'"). */
function countWord(count: number): string {
  return ['no', 'one', 'two', 'three', 'four', 'five', 'six'][count] ?? String(count);
}
