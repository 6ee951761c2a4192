/**
 * Grad-CAM on onnxruntime (the CAM graph of src/models/onnx/cam.ts: the forward read at the registry's
 * `gradCamLayer` plus the head's backward as ONNX ops) against today's tfjs Grad-CAM on the same
 * weights, for every registered architecture (EfficientNet-B3 with its default 'mlp' head): the feature map, the
 * gradient of the chosen class's logit and the final map agree to 1e-4 (relative to their largest
 * magnitude). The same on onnxruntime's WebGPU provider where Dawn finds a Vulkan adapter (lavapipe in CI).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { createInferenceEngine, type CamFeatures, type InferenceEngine } from '../../src/engine/index.js';
import { camFromFeatures } from '../../src/eval/gradcam.js';
import { getModel, listModels, type HeadKind, type ModelName } from '../../src/models/index.js';
import { onnxTestHandle, vulkanAdapter } from '../helpers/onnx-handle.js';
import { rng } from '../helpers/random.js';
import { seededStateDict } from '../helpers/state-dict.js';
import { refusal } from '../helpers/refusal.js';
import { testWith } from '../helpers/requirements.js';

const cpu = await useBackend('cpu');
const classes = 3;

function assertClose(ours: Float32Array, reference: Float32Array, what: string): void {
  assert.is(ours.length, reference.length, `${what}: lengths`);
  const scale = Math.max(...Array.from(reference, Math.abs));
  assert.ok(scale > 0, `${what}: the reference is not all zero`);
  let max = 0;
  for (let i = 0; i < reference.length; i++) max = Math.max(max, Math.abs(ours[i]! - reference[i]!));
  assert.ok(max <= 1e-4 * Math.max(scale, 1e-3), `${what}: max |Δ| ${max} (largest ${scale})`);
}

function compare(ours: CamFeatures, reference: CamFeatures, classIndex: number, what: string): void {
  assert.equal([ours.layer, ours.height, ours.width, ours.channels], [reference.layer, reference.height, reference.width, reference.channels], `${what}: the map's shape`);
  assertClose(ours.activations, reference.activations, `${what} activations`);
  assertClose(ours.gradients, reference.gradients, `${what} gradients`);
  const [mine, theirs] = [camFromFeatures(ours, classIndex).map, camFromFeatures(reference, classIndex).map];
  for (let i = 0; i < theirs.length; i++) assert.ok(Math.abs(mine[i]! - theirs[i]!) <= 1e-4, `${what}: map cell ${i}: ${mine[i]} vs ${theirs[i]}`);
}

async function camCheck(model: ModelName, head: HeadKind | undefined, size: number, onnx: BackendHandle, check: (engine: InferenceEngine) => Promise<void> = async () => {}): Promise<void> {
  const layer = getModel(model).gradCamLayer;
  const weights = await seededStateDict(model, { imageSize: size, seed: 21, numClasses: classes, head, shiftHeadBias: true });
  const next = rng(8);
  const image = Float32Array.from({ length: size * size * 3 }, () => next() * 4 - 2);
  const options = { model, imageSize: size, numClasses: classes, weights, workers: 1 };
  const tfjs = await createInferenceEngine({ ...options, backend: cpu });
  const ours = await createInferenceEngine({ ...options, backend: onnx });
  try {
    for (const classIndex of [0, classes - 1]) {
      const [mine, theirs] = [await ours.features(image, { layer, classIndex }), await tfjs.features(image, { layer, classIndex })];
      compare(mine, theirs, classIndex, `${model}${head ? ` (${head} head)` : ''} class ${classIndex}`);
    }
    await check(ours);
  } finally {
    await Promise.all([tfjs.dispose(), ours.dispose()]);
  }
}

// Each model's default head: EfficientNet-B3's is the 'mlp' one (linear → ReLU → dropout → linear), whose ReLU the backward crosses.
const cases: [ModelName, HeadKind | undefined][] = listModels().map((entry) => [entry.name, undefined]);

for (const [model, head] of cases) {
  test(`${model}${head ? ` (${head} head)` : ''} at 64 px: onnxruntime's Grad-CAM (cpu) gives tfjs' feature map, gradient and map (1e-4)`, async () => {
    const { handle, counts } = onnxTestHandle('cpu');
    await camCheck(model, head, 64, handle);
    assert.equal([counts.created, counts.released], [2, 2], 'the logits session and the CAM session, both released');
  });
}

test('a class outside the model is refused; the CAM session is built once and reused', async () => {
  const { handle, counts } = onnxTestHandle('cpu');
  await camCheck('resnet18', undefined, 32, handle, async (engine) => {
    const image = new Float32Array(32 * 32 * 3);
    await refusal(engine.features(image, { layer: getModel('resnet18').gradCamLayer, classIndex: classes }), /class 3 is outside the model's 3 classes/);
    await refusal(engine.features(new Float32Array(5), { layer: getModel('resnet18').gradCamLayer, classIndex: 0 }), /one image of 32×32×3 values, got 5/);
  });
  assert.equal([counts.created, counts.released], [2, 2]);
});

for (const model of ['resnet18', 'convnext_tiny', 'efficientnet_b0'] as const) {
  testWith(vulkanAdapter, test, `${model} at 32 px: Grad-CAM on onnxruntime's webgpu provider gives tfjs' (1e-4)`, async () => {
    const { handle, counts } = onnxTestHandle('webgpu');
    await camCheck(model, undefined, 32, handle);
    assert.equal([counts.created, counts.released], [2, 2]);
  });
}

test.run();
