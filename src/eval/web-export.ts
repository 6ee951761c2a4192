/**
 * `osteo export --run R [--run R2 …] --format web --out DIR`: a static site that classifies X-rays
 * in the browser with no server-side code and no network: index.html, viewer.js (the page of
 * src/eval/web/page.ts bundled with tfjs and the data room's DICOM reader by esbuild at export time),
 * tfjs's and the DICOM codecs' wasm binaries, metadata.json, the model card, and each run's tfjs
 * LayersModel under models/. The folder is written beside DIR and switched in whole.
 */
import { copyFile, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { activateBackend, type BackendHandle } from '../backend/index.js';
import { classNames, dicomCodecWasmFiles, dicomPageEntry, evalTransformSpec } from '../data/index.js';
import { UserError, osteoVersion, parseCsvRecords, writeFileAtomic, writeJsonAtomic } from '../util/index.js';
import { getModel } from '../models/index.js';
import { openRun, runWeightsPath, type CheckpointName, type RunInfo } from '../runs/index.js';
import { cardFiles } from './card-files.js';
import { pathFromExport, readExportedState, sha256, validatedRun, writeExportCard, writeFolderStaged, type ExportResult } from './export.js';
import { defaultEvalOutDir, evaluationRecordFile, type EvaluationRecord } from './evaluate.js';
import { displayNames } from './inference.js';
import { researchDisclaimer } from './predict.js';
import { calibrationWarnings, exportCalibration } from './export-calibration.js';
import { saveLayersModelToDir } from './tfjs-io.js';
import { pageBackendOrder, type WebMetadata, type WebModelEntry } from './web/metadata.js';

export interface WebExportOptions {
  /** The backend the command chose: the runs' models are built and saved on it. */
  backend: BackendHandle;
  runs: string[];
  outDir: string;
  /** Which checkpoint of every run (default best). */
  checkpoint?: CheckpointName;
}

/** The page's source: page.ts under tsx, the compiled page.js under dist/; esbuild bundles either. */
function pageEntry(): string {
  const extension = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return fileURLToPath(new URL(`./web/page.${extension}`, import.meta.url));
}

let viewerBundle: Promise<Uint8Array> | undefined;

/**
 * One browser script: the page plus tfjs (core, layers, WebGPU/WebGL/wasm backends) and the DICOM
 * reader with its codecs, no CDN. Built once per process (a few seconds).
 */
export function bundleViewer(): Promise<Uint8Array> {
  viewerBundle ??= buildViewer().catch((error: unknown) => {
    viewerBundle = undefined;
    throw error;
  });
  return viewerBundle;
}

async function buildViewer(): Promise<Uint8Array> {
  // The entry hands the page the DICOM reader; its wasm binaries lie beside index.html.
  const entry = [
    `import { startViewer } from ${JSON.stringify(pageEntry())};`,
    `import { pageDicom } from ${JSON.stringify(dicomPageEntry())};`,
    `startViewer(pageDicom(new URL('./', window.location.href).href));`,
  ].join('\n');
  const result = await build({
    stdin: { contents: entry, resolveDir: dirname(pageEntry()), sourcefile: 'viewer-entry.js', loader: 'js' },
    // The codecs' emscripten glue requires these only when it runs in Node, never in the page.
    external: ['fs', 'path'],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return result.outputFiles[0]!.contents;
}

/** tfjs-backend-wasm's binaries (plain, SIMD, threaded SIMD): the page's wasm backend fetches the one the browser supports. */
export const wasmBinaries = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'] as const;

function wasmBinaryDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
}

/** A folder name from a display name (`resnet18:run-a` → `resnet18-run-a`). */
function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, '-');
}

export function indexHtml(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<meta http-equiv="Content-Security-Policy" content="default-src 'self' blob: data:; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:">
<title>${title}</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 980px; padding: 16px; color: #1d232a; }
  h1 { font-size: 1.4em; margin: 0 0 4px; }
  .disclaimer { background: #fff4d6; border: 1px solid #e0b84a; padding: 8px 12px; border-radius: 6px; }
  #drop { border: 2px dashed #8a96a3; border-radius: 8px; padding: 18px; text-align: center; margin: 12px 0; }
  #drop.over { background: #eef5ff; border-color: #2a6fd1; }
  #status { color: #44505c; }
  #results { display: flex; flex-wrap: wrap; gap: 12px; }
  .card { border: 1px solid #d5dbe1; border-radius: 8px; padding: 10px; width: 290px; }
  .card canvas { width: 100%; image-rendering: auto; border-radius: 4px; }
  .caption { font-size: 0.85em; color: #55606b; margin: 4px 0; }
  .bars h3 { font-size: 1em; margin: 6px 0; }
  .bar { display: grid; grid-template-columns: 95px 1fr 52px; align-items: center; gap: 6px; font-size: 0.9em; }
  .track { background: #e8ecf0; height: 12px; border-radius: 6px; overflow: hidden; }
  .fill { display: block; background: #2a6fd1; height: 100%; }
  .value { text-align: right; font-variant-numeric: tabular-nums; }
  table { border-collapse: collapse; margin-top: 6px; }
  th, td { border: 1px solid #d5dbe1; padding: 3px 8px; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  #result { display: none; }
</style>
</head>
<body>
<h1>${title}</h1>
<p class="disclaimer"><strong>Research use only.</strong> <span id="disclaimer"></span> Images are classified in this browser; none leaves the machine.</p>
<div id="drop"><p>Drop a knee X-ray here, or <input type="file" id="file" accept="image/*,.dcm,application/dicom"></p><p id="status">loading models…</p></div>
<p id="calibration" class="caption"></p>
<div id="results"></div>
<h2>Metrics</h2>
<div id="metrics"></div>
<p class="caption">Backend: <span id="backend">—</span> · exported by osteo ${osteoVersion}</p>
<pre id="result"></pre>
<script src="viewer.js"></script>
</body>
</html>
`;
}

/**
 * The metrics table of `osteo eval --run <these runs> [--checkpoint last]` on the test split, read
 * from its default report folder when that report's record names exactly these runs and the very
 * weights exported (their SHA-256, in order): a report of other runs, of weights since replaced
 * (training resumed and found a better epoch) or of the other checkpoint gives null, and the page
 * shows the exported checkpoints' validation metrics alone.
 */
export async function evaluationOf(runs: string[], checkpoint: CheckpointName, weightsSha256: readonly string[]): Promise<WebMetadata['evaluation']> {
  const report = defaultEvalOutDir(runs, 'test', checkpoint);
  try {
    const record = JSON.parse(await readFile(join(report, evaluationRecordFile), 'utf8')) as Partial<EvaluationRecord>;
    const wanted = runs.map((run) => resolve(run));
    const sameRuns = record.runs?.length === wanted.length && record.runs.every((run, i) => resolve(run) === wanted[i]);
    const sameWeights = record.weightsSha256?.length === weightsSha256.length && record.weightsSha256.every((hash, i) => hash === weightsSha256[i]);
    if (!sameRuns || !sameWeights || record.split === undefined) return null;
    const file = join(report, 'results.csv');
    return { split: record.split, report, rows: parseCsvRecords(await readFile(file, 'utf8'), file) };
  } catch {
    return null;
  }
}

/** evaluationOf with its report folder named from the export folder: a shared site names no machine's folders. */
async function relativeEvaluation(outDir: string, runs: string[], checkpoint: CheckpointName, weightsSha256: readonly string[]): Promise<WebMetadata['evaluation']> {
  const evaluation = await evaluationOf(runs, checkpoint, weightsSha256);
  return evaluation === null ? null : { ...evaluation, report: pathFromExport(outDir, evaluation.report) };
}

export async function exportWeb(options: WebExportOptions): Promise<ExportResult> {
  if (options.runs.length === 0) throw new UserError('--format web needs at least one --run DIR');
  await activateBackend(options.backend);
  const infos: RunInfo[] = [];
  const which = options.checkpoint ?? 'best';
  for (const dir of options.runs) infos.push(await openRun(dir, which));
  const names = displayNames(infos.map((info) => ({ model: info.model, run: info.dir, weightsFile: runWeightsPath(info.dir, which) })));
  let metadata: WebMetadata | undefined;
  let files: string[] = [];
  await writeFolderStaged(options.outDir, async (staging) => {
    const entries: WebModelEntry[] = [];
    const written: string[] = [];
    for (const [index, dir] of options.runs.entries()) {
      // Stock layers only, so the browser's tfjs deserializes the model without osteo's classes.
      const run = await validatedRun(dir, { portable: true, checkpoint: which });
      try {
        if (entries.length > 0 && run.numClasses !== entries[0]!.numClasses) throw new UserError(`${dir} has ${run.numClasses} classes, ${options.runs[0]} ${entries[0]!.numClasses}: they cannot be ensembled`);
        const folder = `models/${index + 1}-${slug(names[index]!)}`;
        const weightsSha256 = await sha256(run.weightsFile);
        const saved = await saveLayersModelToDir(run.layersModel, join(staging, folder), `osteo ${osteoVersion}`);
        written.push(...saved.files.map((file) => `${folder}/${file}`));
        entries.push({
          name: names[index]!,
          model: run.model,
          path: folder,
          imageSize: run.imageSize,
          numClasses: run.numClasses,
          preprocessing: evalTransformSpec(run.transform),
          dicomWindow: infos[index]!.config.dicomWindow,
          gradCamLayer: getModel(run.model).gradCamLayer,
          metrics: await readExportedState(run),
          source: { run: pathFromExport(options.outDir, run.run), sha256: weightsSha256 },
          calibration: await exportCalibration(run.run, weightsSha256),
        });
      } finally {
        run.layersModel.dispose();
      }
    }
    await writeFileAtomic(join(staging, 'viewer.js'), await bundleViewer());
    for (const binary of wasmBinaries) await copyFile(join(wasmBinaryDir(), binary), join(staging, binary));
    const codecBinaries = dicomCodecWasmFiles();
    for (const file of codecBinaries) await copyFile(file, join(staging, basename(file)));
    await writeFileAtomic(join(staging, 'index.html'), indexHtml('osteo — knee X-ray viewer'));
    const numClasses = entries[0]!.numClasses;
    files = ['index.html', 'viewer.js', ...wasmBinaries, ...codecBinaries.map((file) => basename(file)), ...written];
    metadata = {
      format: 'osteo-web',
      osteoVersion,
      createdAt: new Date().toISOString(),
      classes: numClasses === classNames.length ? [...classNames] : Array.from({ length: numClasses }, (_, i) => `class ${i}`),
      disclaimer: researchDisclaimer,
      backends: pageBackendOrder,
      checkpoint: which,
      evaluation: await relativeEvaluation(options.outDir, options.runs, which, entries.map((entry) => entry.source.sha256)),
      ensemble: {
        method: "mean of the models' probabilities with these weights (soft vote; equal, as osteo predict; calibrated by their temperatures when every model's applies to its weights); argmax",
        weights: entries.map(() => 1 / entries.length),
      },
      models: entries,
      files,
    };
    await writeJsonAtomic(join(staging, 'metadata.json'), metadata);
    await writeExportCard(staging, options.outDir, options.runs, which, { format: 'web', files: [...files, 'metadata.json'] });
  });
  const warnings = calibrationWarnings(metadata!.models.map((entry) => [entry.name, entry.calibration]));
  return { dir: options.outDir, files: [...files, 'metadata.json', ...cardFiles], metadata, warnings };
}
