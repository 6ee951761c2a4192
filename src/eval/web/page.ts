/**
 * The browser viewer of a web export (bundled by esbuild into viewer.js at export time): it loads
 * metadata.json and each run's tfjs LayersModel, classifies a dropped or chosen image with the same
 * preprocessing as `osteo predict` (done here, on raw pixels), shows each model's and the soft-vote
 * ensemble's probabilities with a Grad-CAM overlay, and writes the result as JSON into #result.
 * The probabilities are calibrated (softmax(logits / T), each run's temperature from the export's
 * metadata) when every model's temperature applies to its weights, as `osteo predict` calibrates
 * them, and #calibration says which T or why none.
 * `?image=URL` classifies that image on load (for automation). Nothing leaves the machine.
 *
 * A DICOM file (told by its signature, as the image readers tell it) is decoded in the page by the
 * data room's DICOM reader itself (src/data/dicom-page.ts, bundled in with its wasm codecs), under
 * each model's recorded window, so the page sees the film `osteo predict` sees; #result carries no
 * DICOM tag value, only the file's name and the predictions. The export's entry hands that reader to
 * `startViewer`.
 *
 * This is a separate program from osteo's Node process, so it picks its own backend (WebGPU, then
 * WebGL, then wasm) rather than going through src/backend/.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { PageDicom } from '../../data/index.js';
import type { WebMetadata, WebModelEntry } from './metadata.js';
import { heatColor } from './heat.js';
import { preprocessPixels, rgbaToRgb, type PagePixels, type RgbPixels } from './preprocess.js';

interface LoadedPageModel {
  entry: WebModelEntry;
  model: tfl.LayersModel;
}

interface ModelResult {
  prediction: string;
  confidence: number;
  probabilities: number[];
}

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function describe(probabilities: number[], classes: string[]): ModelResult {
  let best = 0;
  for (let c = 1; c < probabilities.length; c++) if (probabilities[c]! > probabilities[best]!) best = c;
  return { prediction: classes[best] ?? String(best), confidence: probabilities[best]!, probabilities };
}

/**
 * How the page asks whether each browser backend can run here — without tfjs, so an absent GPU does
 * not log initialization errors. One record per backend; the order to try comes from metadata.json.
 */
const browserSupport: Readonly<Record<string, () => Promise<boolean>>> = {
  webgpu: async () => {
    const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    return gpu !== undefined && (await gpu.requestAdapter().catch(() => null)) !== null;
  },
  webgl: async () => {
    const canvas = document.createElement('canvas');
    return (canvas.getContext('webgl2') ?? canvas.getContext('webgl')) !== null;
  },
  wasm: async () => typeof WebAssembly === 'object',
};

async function available(name: string): Promise<boolean> {
  return (await browserSupport[name]?.()) ?? false;
}

async function chooseBackend(order: readonly string[]): Promise<string> {
  // The wasm binaries were copied next to index.html by the export.
  setWasmPaths(new URL('./', window.location.href).href);
  const tried: string[] = [];
  for (const name of order) {
    if (!(await available(name))) {
      tried.push(`${name} (not available)`);
      continue;
    }
    if (await tf.setBackend(name).catch(() => false)) {
      await tf.ready();
      return name;
    }
    tried.push(`${name} (failed to initialize)`);
  }
  throw new Error(`no TensorFlow.js backend works in this browser: ${tried.join(', ')}`);
}

async function decodeImage(blob: Blob): Promise<RgbPixels> {
  // No colour management or premultiplication: the raw file values, as sharp decodes them for predict.
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext('2d', { willReadFrequently: true })!;
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return rgbaToRgb(context.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
}

/** softmax(logits / temperature): temperature 1 gives the plain softmax. */
async function probabilitiesOf(model: tfl.LayersModel, input: Float32Array, size: number, temperature: number): Promise<number[]> {
  const probabilities = tf.tidy(() => tf.softmax(tf.div(model.predict(tf.tensor4d(input, [1, size, size, 3])) as tf.Tensor2D, temperature)));
  try {
    return Array.from(await probabilities.data());
  } finally {
    probabilities.dispose();
  }
}

type LayerWithNodes = tfl.layers.Layer & { inboundNodes: { inboundLayers: tfl.layers.Layer[] }[] };

type CamSplit = { features: tfl.LayersModel; head: tfl.layers.Layer[] } | string;
// The sub-model shares the original's weights (none of its own), so it is made once per model and never disposed.
const camSplits = new WeakMap<tfl.LayersModel, CamSplit>();

/** The model cut at its Grad-CAM layer and the plain chain of layers after it (as src/eval/gradcam.ts); a string says why not. */
function camSplit(model: tfl.LayersModel, layerName: string): CamSplit {
  if (!camSplits.has(model)) camSplits.set(model, traceCamSplit(model, layerName));
  return camSplits.get(model)!;
}

function traceCamSplit(model: tfl.LayersModel, layerName: string): CamSplit {
  const layers = model.layers as LayerWithNodes[];
  const cut = layers.findIndex((layer) => layer.name === layerName);
  if (cut < 0) return `the exported model has no layer '${layerName}'`;
  let previous: tfl.layers.Layer = layers[cut]!;
  const head = layers.slice(cut + 1);
  for (const layer of head) {
    const inbound = layer.inboundNodes.flatMap((node) => node.inboundLayers);
    if (inbound.length !== 1 || inbound[0] !== previous) return `the layers after '${layerName}' are not a plain chain`;
    previous = layer;
  }
  return { features: tfl.model({ inputs: model.inputs, outputs: layers[cut]!.output as tfl.SymbolicTensor }), head };
}

/** Grad-CAM (the class score's gradient at the feature map, averaged over space, weights its channels), upsampled to size×size. */
async function gradCamMap(model: tfl.LayersModel, layerName: string, input: Float32Array, size: number, classIndex: number): Promise<{ map: Float32Array; grid: number[]; cells: number[] } | string> {
  const split = camSplit(model, layerName);
  if (typeof split === 'string') return split;
  const [cells, upsampled, grid] = tf.tidy(() => {
    const activations = split.features.predict(tf.tensor4d(input, [1, size, size, 3])) as tf.Tensor4D;
    const score = (a: tf.Tensor): tf.Tensor => {
      let y = a;
      for (const layer of split.head) y = layer.apply(y, { training: false }) as tf.Tensor;
      return tf.sum(tf.slice(y, [0, classIndex], [1, 1]));
    };
    const gradients = tf.grad(score)(activations) as tf.Tensor4D;
    const cam = tf.relu(tf.sum(tf.mul(activations, tf.mean(gradients, [1, 2], true)), 3, true)) as tf.Tensor4D;
    const max = tf.max(cam);
    const scaled = tf.where(tf.greater(max, 0), tf.div(cam, tf.maximum(max, 1e-12)), tf.zerosLike(cam)) as tf.Tensor4D;
    return [scaled, tf.image.resizeBilinear(scaled, [size, size], false, true), [activations.shape[1], activations.shape[2]]] as [tf.Tensor4D, tf.Tensor4D, number[]];
  });
  try {
    return { map: (await upsampled.data()) as Float32Array, grid, cells: Array.from(await cells.data()) };
  } finally {
    cells.dispose();
    upsampled.dispose();
  }
}

/** The crop the model saw (de-normalized), with the heat map blended in where it is strong. */
function overlayCanvas(input: Float32Array, entry: WebModelEntry, map: Float32Array | null): HTMLCanvasElement {
  const size = entry.preprocessing.crop;
  const canvas = document.createElement('canvas');
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext('2d')!;
  const image = context.createImageData(size, size);
  const { mean, std } = entry.preprocessing;
  for (let p = 0; p < size * size; p++) {
    const t = map?.[p] ?? 0;
    const color = heatColor(t);
    const alpha = map ? 0.25 + 0.5 * t : 0;
    for (let c = 0; c < 3; c++) {
      const gray = Math.min(255, Math.max(0, (input[p * 3 + c]! * std[c]! + mean[c]!) * 255));
      image.data[p * 4 + c] = Math.round((1 - alpha) * gray + alpha * color[c]!);
    }
    image.data[p * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

function bars(title: string, result: ModelResult, classes: string[]): HTMLElement {
  const section = document.createElement('section');
  section.className = 'bars';
  const heading = document.createElement('h3');
  heading.textContent = `${title}: ${result.prediction} (${(result.confidence * 100).toFixed(1)}%)`;
  section.append(heading);
  result.probabilities.forEach((p, c) => {
    const row = document.createElement('div');
    row.className = 'bar';
    row.innerHTML = `<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    (row.querySelector('.label') as HTMLElement).textContent = classes[c] ?? String(c);
    (row.querySelector('.fill') as HTMLElement).style.width = `${(p * 100).toFixed(1)}%`;
    (row.querySelector('.value') as HTMLElement).textContent = `${(p * 100).toFixed(1)}%`;
    section.append(row);
  });
  return section;
}

/** A table of strings; the first column is left-aligned by the page's style. */
function table(header: string[], rows: string[][]): HTMLTableElement {
  const element = document.createElement('table');
  const row = (cells: string[], tag: 'th' | 'td') => {
    const tr = document.createElement('tr');
    for (const text of cells) {
      const cell = document.createElement(tag);
      cell.textContent = text;
      tr.append(cell);
    }
    element.append(tr);
  };
  row(header, 'th');
  for (const cells of rows) row(cells, 'td');
  return element;
}

/** `osteo eval`'s test metrics of the exported weights when the export found them, and the exported checkpoints' validation metrics. */
function metricsTables(metadata: WebMetadata): HTMLElement[] {
  const tables: HTMLElement[] = [];
  if (metadata.evaluation !== null && metadata.evaluation.rows.length > 0) {
    const caption = document.createElement('p');
    caption.textContent = `osteo eval on the ${metadata.evaluation.split} split:`;
    const header = Object.keys(metadata.evaluation.rows[0]!);
    tables.push(caption, table(header, metadata.evaluation.rows.map((row) => header.map((key) => row[key] ?? ''))));
  }
  const records = metadata.models.map((entry) => {
    const record = (entry.metrics ?? {}) as { epoch?: unknown; metrics?: Record<string, unknown> };
    const values = Object.entries(record.metrics ?? {}).filter(([key, v]) => key.startsWith('val') && typeof v === 'number') as [string, number][];
    return { name: entry.name, epoch: record.epoch, values: Object.fromEntries(values) };
  });
  const keys = [...new Set(records.flatMap((row) => Object.keys(row.values)))];
  const caption = document.createElement('p');
  caption.textContent = `Validation metrics at each run’s ${metadata.checkpoint} checkpoint (the exported weights):`;
  const rows = records.map((row) => [row.name, row.epoch === undefined ? '—' : String(row.epoch), ...keys.map((key) => (row.values[key] === undefined ? '—' : row.values[key]!.toFixed(4)))]);
  tables.push(caption, table(['model', 'epoch', ...keys], rows));
  return tables;
}

/**
 * The file's pixels for each model: a raster image decoded once by the browser, a DICOM file once per
 * window by the DICOM reader. Keyed as the inputs are keyed (window, preprocessing).
 */
async function modelInputs(blob: Blob, models: LoadedPageModel[], dicom: PageDicom): Promise<(entry: WebModelEntry) => Float32Array> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const isDicom = dicom.isDicom(bytes);
  const decoded = new Map<string, PagePixels>();
  const inputs = new Map<string, Float32Array>();
  const keyOf = (entry: WebModelEntry) => JSON.stringify([isDicom ? entry.dicomWindow : '', entry.preprocessing]);
  for (const { entry } of models) {
    const window = isDicom ? entry.dicomWindow : '';
    if (!decoded.has(window)) decoded.set(window, isDicom ? await dicom.decode(bytes, window) : await decodeImage(blob));
    if (!inputs.has(keyOf(entry))) inputs.set(keyOf(entry), preprocessPixels(decoded.get(window)!, entry.preprocessing, dicom.resizeFloat));
  }
  return (entry) => inputs.get(keyOf(entry))!;
}

/**
 * Each model's temperature when every model's calibration applies to its exported weights, else
 * null: as `osteo predict`, a partial or stale set is not applied, and the page says why.
 */
function temperatures(models: readonly WebModelEntry[]): Record<string, number> | null {
  if (!models.every((entry) => entry.calibration?.applied === true)) return null;
  return Object.fromEntries(models.map((entry) => [entry.name, entry.calibration!.temperature]));
}

/** The visible note on the probabilities: calibrated (T = …) for each model, or why they are not. */
function calibrationText(models: readonly WebModelEntry[]): string {
  const applied = temperatures(models);
  if (applied !== null) return `Probabilities are calibrated (temperature scaling): ${Object.entries(applied).map(([name, t]) => `${name} calibrated (T = ${t.toFixed(3)})`).join(', ')}.`;
  const reasons = models.map((entry) =>
    entry.calibration === null ? `${entry.name} has no calibration` : entry.calibration.applied ? `${entry.name} is calibrated` : `${entry.name}: ${entry.calibration.reason ?? 'not applied'}`,
  );
  return `Probabilities are not calibrated (${reasons.join('; ')}): run osteo calibrate on every run and export again.`;
}

async function classify(blob: Blob, label: string, metadata: WebMetadata, models: LoadedPageModel[], backend: string, dicom: PageDicom): Promise<void> {
  const status = byId('status');
  status.textContent = `classifying ${label} on ${backend}…`;
  const inputOf = await modelInputs(blob, models, dicom);
  const perModel: number[][] = [];
  const calibration = temperatures(models.map((m) => m.entry));
  for (const { entry, model } of models) perModel.push(await probabilitiesOf(model, inputOf(entry), entry.preprocessing.crop, calibration?.[entry.name] ?? 1));
  const weights = metadata.ensemble.weights;
  const combined = perModel[0]!.map((_, c) => perModel.reduce((sum, probabilities, m) => sum + weights[m]! * probabilities[c]!, 0));
  const ensemble = describe(combined, metadata.classes);
  const classIndex = metadata.classes.indexOf(ensemble.prediction);

  const results = byId('results');
  results.replaceChildren();
  const gradcam: Record<string, unknown> = {};
  const modelResults: Record<string, ModelResult> = {};
  for (const [m, { entry, model }] of models.entries()) {
    const input = inputOf(entry);
    const cam = await gradCamMap(model, entry.gradCamLayer, input, entry.preprocessing.crop, classIndex);
    const empty = typeof cam !== 'string' && !cam.map.some((v) => v > 0);
    gradcam[entry.name] = typeof cam === 'string' ? { unavailable: cam } : { layer: entry.gradCamLayer, grid: cam.grid, class: metadata.classes[classIndex], empty, map: cam.cells };
    modelResults[entry.name] = describe(perModel[m]!, metadata.classes);
    const card = document.createElement('div');
    card.className = 'card';
    const figure = overlayCanvas(input, entry, typeof cam === 'string' ? null : cam.map);
    const caption = document.createElement('p');
    caption.className = 'caption';
    const target = metadata.classes[classIndex];
    caption.textContent =
      typeof cam === 'string' ? `Grad-CAM unavailable: ${cam}` : empty ? `Grad-CAM: no region supports ${target} at ${entry.gradCamLayer}` : `Grad-CAM for ${target} at ${entry.gradCamLayer}`;
    const title = calibration === null ? entry.name : `${entry.name}, calibrated (T = ${calibration[entry.name]!.toFixed(3)})`;
    card.append(figure, caption, bars(title, modelResults[entry.name]!, metadata.classes));
    results.append(card);
  }
  if (models.length > 1) {
    const card = document.createElement('div');
    card.className = 'card';
    card.append(bars(`soft vote of ${models.length} models`, ensemble, metadata.classes));
    results.append(card);
  }
  byId('result').textContent = JSON.stringify({ image: label, backend, ...ensemble, models: modelResults, gradcam, ...(calibration === null ? {} : { calibration }) });
  byId('result').dataset['status'] = 'done';
  status.textContent = `${label}: ${ensemble.prediction} (${(ensemble.confidence * 100).toFixed(1)}%) on ${backend}`;
}

async function main(dicom: PageDicom): Promise<void> {
  const metadata = (await (await fetch('metadata.json')).json()) as WebMetadata;
  byId('disclaimer').textContent = metadata.disclaimer;
  byId('metrics').replaceChildren(...metricsTables(metadata));
  byId('calibration').textContent = calibrationText(metadata.models);
  const backend = await chooseBackend(metadata.backends);
  byId('backend').textContent = backend;
  const models: LoadedPageModel[] = [];
  for (const entry of metadata.models) models.push({ entry, model: await tfl.loadLayersModel(`${entry.path}/model.json`) });
  byId('status').textContent = `${models.length} model${models.length > 1 ? 's' : ''} loaded on ${backend}: drop or choose an X-ray`;

  const run = (blob: Blob, label: string) =>
    classify(blob, label, metadata, models, backend, dicom).catch((error: Error) => {
      byId('status').textContent = `could not classify ${label}: ${error.message}`;
      byId('result').textContent = JSON.stringify({ image: label, backend, error: error.message });
      byId('result').dataset['status'] = 'error';
    });
  const picker = byId<HTMLInputElement>('file');
  picker.addEventListener('change', () => {
    const file = picker.files?.[0];
    if (file) void run(file, file.name);
  });
  const zone = byId('drop');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const file = event.dataTransfer?.files[0];
    if (file) void run(file, file.name);
  });
  const image = new URLSearchParams(window.location.search).get('image');
  if (image !== null) {
    const response = await fetch(image);
    if (!response.ok) throw new Error(`cannot fetch ${image}: HTTP ${response.status}`);
    await run(await response.blob(), image);
  }
}

/** The page's start, with the DICOM reader the export's entry bundles in. */
export function startViewer(dicom: PageDicom): void {
  main(dicom).catch((error: Error) => {
    byId('status').textContent = `the viewer could not start: ${error.message}`;
    byId('result').textContent = JSON.stringify({ error: error.message });
    byId('result').dataset['status'] = 'error';
  });
}
