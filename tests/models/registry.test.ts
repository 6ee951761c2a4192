/**
 * The registry, and the same checks for every registered model (tiny inputs; the PyTorch parity
 * sweep is parity.test.ts): output shape, parameter counts against torchvision's published numbers,
 * no leaked tensors, freezing, preprocessing, seeding, and tfjs serialisation (custom and portable).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { UserError } from '../../src/util/index.js';
import {
  adjustChannels,
  adjustDepth,
  efficientnetTable,
  freezeUntilStage,
  getModel,
  listModels,
  ModelRegistry,
  seedModelRandomness,
  TorchBatchNorm,
  type ModelEntry,
} from '../../src/models/index.js';
import { loadStateDict, modelToStateDict } from '../../src/weights/index.js';

const size = 32;

/** Parameters (excluding BatchNorm buffers) with the dashboard's 3-class heads, and with torchvision's ImageNet heads (its weights' num_params). */
const parameterCounts: Record<string, { dashboard: number; imagenet: number }> = {
  resnet18: { dashboard: 11_178_051, imagenet: 11_689_512 },
  resnet50: { dashboard: 23_514_179, imagenet: 25_557_032 },
  efficientnet_b3: { dashboard: 11_484_715, imagenet: 12_233_232 },
};

const batch = () => tf.randomNormal([2, size, size, 3], 0, 1, 'float32', 42) as tf.Tensor4D;

function predict(model: tfl.LayersModel, x: tf.Tensor): Float32Array {
  return tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync() as Float32Array).slice();
}

function countParameters(model: tfl.LayersModel): number {
  return model.weights
    .filter((w) => !/\/(moving_mean|moving_variance|num_batches_tracked)$/.test(w.originalName))
    .reduce((sum, w) => sum + (w.shape as number[]).reduce((a, b) => a * b, 1), 0);
}

test.before(async () => {
  await useBackend('wasm');
});

test('the registry holds the three models; unknown names list the valid ones; duplicates throw', () => {
  assert.equal(listModels().map((m) => m.name), ['resnet18', 'resnet50', 'efficientnet_b3']);
  try {
    getModel('vgg16');
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, "unknown model 'vgg16': choose one of resnet18, resnet50, efficientnet_b3");
  }
  const registry = new ModelRegistry();
  registry.register(getModel('resnet18'));
  assert.throws(() => registry.register(getModel('resnet18')), /already registered/);
  assert.throws(() => new ModelRegistry().get('resnet18'), /\(none registered\)/);
});

test("EfficientNet-B3's stage table follows torchvision's width/depth rounding", () => {
  const { widthMult, depthMult } = efficientnetTable.efficientnet_b3;
  assert.equal([32, 16, 24, 40, 80, 112, 192, 320].map((c) => adjustChannels(c, widthMult)), [40, 24, 32, 48, 96, 136, 232, 384]);
  assert.equal([1, 2, 2, 3, 3, 4, 1].map((n) => adjustDepth(n, depthMult)), [2, 3, 3, 5, 5, 6, 2]);
  assert.equal([32, 16, 24].map((c) => adjustChannels(c, 1)), [32, 16, 24], 'B0 is the table itself');
});

for (const entry of listModels()) {
  test(`${entry.name}: logits shape, parameter counts, and no leaked tensors`, () => {
    const before = tf.memory().numTensors;
    const model = entry.build({ imageSize: size, numClasses: 5, initialize: false });
    assert.equal(model.inputs[0]!.shape, [null, size, size, 3]);
    const x = batch();
    const y = model.predict(x) as tf.Tensor;
    assert.equal(y.shape, [2, 5]);
    tf.dispose([x, y]);
    assert.is(countParameters(model), entry.parameterCount(5));
    model.dispose();
    assert.is(tf.memory().numTensors, before, 'build + predict + dispose leaves no tensor');
    assert.is(entry.parameterCount(), parameterCounts[entry.name]!.dashboard);
    assert.is(entry.parameterCount(1000, 'torchvision'), parameterCounts[entry.name]!.imagenet);
  });

  test(`${entry.name}: preprocessing, stages and checkpoint metadata`, () => {
    const expected = entry.name === 'efficientnet_b3' ? { size: 300, resize: 320, resize224: 239 } : { size: 224, resize: 256, resize224: 256 };
    assert.is(entry.defaultImageSize, expected.size);
    assert.equal(entry.transform(), { resize: expected.resize, crop: expected.size, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    assert.is(entry.transform(224).resize, expected.resize224);
    assert.is(entry.stages[entry.stages.length - 1], entry.classifierName);
    assert.match(entry.pretrained.url, /^https:\/\/download\.pytorch\.org\/models\//);
    assert.ok(entry.pretrained.url.endsWith(entry.pretrained.fileName));
    assert.match(entry.pretrained.fileName, new RegExp(`-${entry.pretrained.sha256Prefix}\\.pth$`));
    assert.throws(() => entry.build({ imageSize: 16 }), (e: unknown) => e instanceof UserError && /≥ 32/.test((e as Error).message));
    assert.throws(() => entry.build({ numClasses: 0 }), (e: unknown) => e instanceof UserError);
    assert.throws(
      () => entry.build({ freezeUntil: 'nope' }),
      (e: unknown) => e instanceof UserError && (e as Error).message.includes(entry.stages.join(', ')),
    );
  });

  test(`${entry.name}: freezeUntil freezes the stages up to it, and their BatchNorms ignore training=true`, () => {
    const stage = entry.stages[Math.floor(entry.stages.length / 2)]!;
    const frozenStages = entry.stages.slice(0, entry.stages.indexOf(stage) + 1);
    const model = entry.build({ imageSize: size, freezeUntil: stage, initialize: false });
    try {
      for (const layer of model.layers) {
        const layerStage = entry.stageOf(layer.name);
        if (layerStage === null) continue;
        assert.is(layer.trainable, !frozenStages.includes(layerStage), `${layer.name} (${layerStage})`);
      }
      const trainable = new Set(model.trainableWeights.map((w) => w.originalName));
      for (const w of model.weights) {
        const layerName = w.originalName.slice(0, w.originalName.lastIndexOf('/'));
        const frozen = frozenStages.includes(entry.stageOf(layerName)!);
        if (frozen) assert.not.ok(trainable.has(w.originalName), `${w.originalName} is frozen`);
      }
      const batchNorms = model.layers.filter((l): l is TorchBatchNorm => l instanceof TorchBatchNorm);
      const x = batch();
      tf.dispose(model.apply(x, { training: true }) as tf.Tensor);
      x.dispose();
      for (const bn of batchNorms) {
        const frozen = frozenStages.includes(entry.stageOf(bn.name)!);
        const count = bn.numBatchesTracked.read().dataSync()[0];
        const mean = bn.movingMean.read().dataSync();
        assert.is(count, frozen ? 0 : 1, `${bn.name} batch count`);
        if (frozen) assert.ok(mean.every((v) => v === 0), `${bn.name} running mean untouched`);
      }
      // Moving the boundary to the first stage unfreezes the rest again.
      freezeUntilStage(model, entry, entry.stages[0]!);
      assert.ok(model.layers.filter((l) => entry.stageOf(l.name) === entry.classifierName).every((l) => l.trainable));
    } finally {
      model.dispose();
    }
  });

  test(`${entry.name}: the same seed builds the same weights; another seed different ones`, () => {
    if (entry.name === 'resnet50') return; // initialisation is shared code; one ResNet is enough for the time budget
    const firstConv = (m: tfl.LayersModel) => m.layers.find((l) => l.getClassName() === 'Conv2D')!.getWeights()[0]!.dataSync() as Float32Array;
    const a = entry.build({ imageSize: size, seed: 3 });
    const b = entry.build({ imageSize: size, seed: 3 });
    const c = entry.build({ imageSize: size, seed: 4 });
    try {
      assert.equal(firstConv(a), firstConv(b));
      assert.not.equal(Array.from(firstConv(a)), Array.from(firstConv(c)));
      // Kaiming-normal fan_out: the stem conv's std is sqrt(2 / (out · k · k)).
      const w = firstConv(a);
      const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
      const out = entry.name === 'efficientnet_b3' ? 40 : 64;
      const k = entry.name === 'efficientnet_b3' ? 3 : 7;
      assert.ok(Math.abs(std / Math.sqrt(2 / (out * k * k)) - 1) < 0.1, `stem std ${std}`);
    } finally {
      [a, b, c].forEach((m) => m.dispose());
    }
  });

  test(`${entry.name}: saves as a tfjs LayersModel and reloads with tf.loadLayersModel; the portable build matches`, async () => {
    const model = entry.build({ imageSize: size, seed: 5 });
    const portable = entry.build({ imageSize: size, portable: true, initialize: false });
    const x = batch();
    try {
      const expected = predict(model, x);
      let artifacts: tf.io.ModelArtifacts | undefined;
      await model.save(tf.io.withSaveHandler(async (a) => ((artifacts = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } })));
      const reloaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
      assert.equal(predict(reloaded, x), expected);
      reloaded.dispose();

      loadStateDict(portable, entry.name, modelToStateDict(model, entry.name));
      const stock = new Set(JSON.stringify(portable.toJSON(null, false)).match(/"class_name":"[A-Za-z0-9]+"/g));
      for (const custom of ['TorchBatchNorm', 'SeededDropout', 'StochasticDepth']) assert.not.ok(stock.has(`"class_name":"${custom}"`), custom);
      const portableLogits = predict(portable, x);
      expected.forEach((v, i) => assert.ok(Math.abs(v - portableLogits[i]!) < 1e-5, `logit ${i}`));
    } finally {
      tf.dispose(x);
      model.dispose();
      portable.dispose();
    }
  });
}

test('seedModelRandomness makes dropout and stochastic depth replayable', () => {
  const entry: ModelEntry = getModel('efficientnet_b3');
  const model = entry.build({ imageSize: size, seed: 1 });
  const x = batch();
  try {
    const train = () => tf.tidy(() => (model.apply(x, { training: true }) as tf.Tensor).dataSync().slice());
    // BatchNorm running statistics move under training=true; freeze them so only the random draws differ.
    for (const layer of model.layers) if (layer instanceof TorchBatchNorm) layer.trainable = false;
    seedModelRandomness(model, 9);
    const first = train();
    const second = train();
    seedModelRandomness(model, 9);
    const replay = train();
    seedModelRandomness(model, 10);
    const other = train();
    assert.equal(replay, first);
    assert.not.equal(Array.from(second), Array.from(first), 'fresh masks each step');
    assert.not.equal(Array.from(other), Array.from(first), 'another seed, other masks');
    assert.equal(predict(model, x), predict(model, x), 'inference is deterministic');
  } finally {
    x.dispose();
    model.dispose();
  }
});

test.run();
