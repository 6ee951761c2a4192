/**
 * A seeded model's torchvision-keyed state dict with its BatchNorm statistics moved away from the
 * identity (mean in ±0.1, variance in [0.5, 1.5)), so a layout or statistics slip between two engines
 * shows in their outputs. `shiftHeadBias` also draws the classifier's bias in ±0.5, which moves the
 * head's operating point away from the origin (Grad-CAM's gradients are then not symmetric).
 */
import { getModel, type HeadKind, type ModelName } from '../../src/models/index.js';
import { modelToStateDict, type StateDict } from '../../src/weights/index.js';
import { rng } from './random.js';

export interface SeededWeights {
  imageSize: number;
  seed: number;
  numClasses?: number;
  head?: HeadKind;
  shiftHeadBias?: boolean;
}

export async function seededStateDict(model: ModelName, options: SeededWeights): Promise<StateDict> {
  const { imageSize, seed, numClasses = 3, head, shiftHeadBias = false } = options;
  const built = getModel(model).build({ imageSize, seed, numClasses, head });
  try {
    const dict = await modelToStateDict(built, model);
    const next = rng(seed + 1);
    for (const [key, tensor] of dict) {
      const data = tensor.data as Float32Array;
      if (key.endsWith('running_mean')) for (let i = 0; i < data.length; i++) data[i] = (next() - 0.5) * 0.2;
      if (key.endsWith('running_var')) for (let i = 0; i < data.length; i++) data[i] = 0.5 + next();
      if (shiftHeadBias && /(^|\.)(fc|classifier\.\d)\.bias$/.test(key)) for (let i = 0; i < data.length; i++) data[i] = next() - 0.5;
    }
    return dict;
  } finally {
    built.dispose();
  }
}
