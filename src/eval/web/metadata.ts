/** metadata.json of a web export: what the exporter writes and the page reads (types only, shared by both). */
import type { ExportCalibration } from '../export-calibration.js';
import type { PagePreprocessing } from './preprocess.js';

/** The page tries the backends in this order and keeps the first that initializes. */
export const pageBackendOrder = ['webgpu', 'webgl', 'wasm'] as const;

export interface WebModelEntry {
  /** Display name, as `osteo predict` names the model (`resnet18`, or `resnet18:run-a` when two runs share one). */
  name: string;
  model: string;
  /** Folder of the tfjs LayersModel, relative to the page. */
  path: string;
  imageSize: number;
  numClasses: number;
  preprocessing: PagePreprocessing & { steps: string; interpolation: 'bilinear' };
  /** How DICOM files become gray levels for this model: its run's recorded window (`auto`, `file` or `C,W`). */
  dicomWindow: string;
  /** The registry's Grad-CAM feature map: a layer of the exported model. */
  gradCamLayer: string;
  /** The exported checkpoint's record (epoch, validation metrics), or null when it kept none. */
  metrics: unknown;
  source: { run: string; sha256: string };
  /** The run's temperature (null: not calibrated): the page shows softmax(logits / T) when it is `applied`, softmax(logits) otherwise. */
  calibration: ExportCalibration | null;
}

export interface WebMetadata {
  format: 'osteo-web';
  osteoVersion: string;
  createdAt: string;
  classes: string[];
  disclaimer: string;
  backends: readonly string[];
  /** The soft vote is of the members' probabilities, calibrated where their temperature applies (as `osteo predict`). */
  ensemble: { method: string; weights: number[] };
  /** Which checkpoint of every run was exported. */
  checkpoint: 'best' | 'last';
  /** `osteo eval`'s test-split report of exactly these weights (results.csv rows: each model and the ensemble), when one exists. */
  evaluation: { split: string; report: string; rows: Record<string, string>[] } | null;
  models: WebModelEntry[];
  files: string[];
}
