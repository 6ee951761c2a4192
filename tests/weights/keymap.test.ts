/** The torchvision key map: layouts, load reports, strictness, and the head swap. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { UserError } from '../../src/util/index.js';
import { getModel } from '../../src/models/index.js';
import { SeededRandom } from '../../src/models/random.js';
import { permute } from '../../src/weights/keymap.js';
import { loadStateDict, modelToStateDict, type StateDict } from '../../src/weights/index.js';

const resnet18 = getModel('resnet18');
const efficientnet = getModel('efficientnet_b3');

function weightOf(model: tfl.LayersModel, layerName: string, index = 0): { values: Float32Array; shape: number[] } {
  const variable = model.getLayer(layerName).weights[index]!;
  return { values: (variable.read().dataSync() as Float32Array).slice(), shape: variable.shape as number[] };
}

function clone(dict: StateDict): StateDict {
  return new Map([...dict].map(([key, t]) => [key, { ...t, shape: [...t.shape], data: t.data.slice() } as typeof t]));
}

test.before(async () => {
  await useBackend('wasm');
});

test('permute agrees with tf.transpose for every layout permutation', async () => {
  const random = new SeededRandom(3);
  const shape = [2, 3, 4, 5];
  const data = Float32Array.from({ length: 120 }, () => random.next());
  for (const perm of [[3, 2, 0, 1], [2, 3, 1, 0], [2, 3, 0, 1]]) {
    const expected = tf.tidy(() => tf.transpose(tf.tensor(data, shape), perm).dataSync());
    assert.equal(permute(data, shape, perm), expected, `perm ${perm}`);
  }
  const matrix = Float32Array.from({ length: 6 }, (_, i) => i);
  assert.equal(permute(matrix, [2, 3], [1, 0]), Float32Array.from([0, 3, 1, 4, 2, 5]));
});

test('conv, depthwise and linear weights are written in PyTorch layouts (hand-indexed)', async () => {
  const model = resnet18.build({ imageSize: 32, seed: 1 });
  const b3 = efficientnet.build({ imageSize: 32, seed: 1 });
  try {
    const dict = await modelToStateDict(model, 'resnet18');
    // conv: torch [out, in, kh, kw] ← tfjs [kh, kw, in, out]
    const conv = weightOf(model, 'conv1');
    const torchConv = dict.get('conv1.weight')!;
    assert.equal(torchConv.shape, [64, 3, 7, 7]);
    for (const [o, i, y, x] of [[0, 0, 0, 0], [63, 2, 6, 6], [5, 1, 3, 2], [17, 2, 0, 6]] as const) {
      assert.is(torchConv.data[((o * 3 + i) * 7 + y) * 7 + x], conv.values[((y * 7 + x) * 3 + i) * 64 + o]);
    }
    // linear: torch [out, in] ← tfjs [in, out]
    const fc = weightOf(model, 'fc');
    const torchFc = dict.get('fc.weight')!;
    assert.equal(torchFc.shape, [3, 512]);
    assert.is(torchFc.data[2 * 512 + 100], fc.values[100 * 3 + 2]);
    // depthwise: torch [c, 1, kh, kw] ← tfjs [kh, kw, c, 1]
    const b3Dict = await modelToStateDict(b3, 'efficientnet_b3');
    const dw = weightOf(b3, 'features.1.0.block.0.0');
    const torchDw = b3Dict.get('features.1.0.block.0.0.weight')!;
    assert.equal(torchDw.shape, [40, 1, 3, 3]);
    assert.equal(dw.shape, [3, 3, 40, 1]);
    assert.is(torchDw.data[(33 * 3 + 2) * 3 + 1], dw.values[(2 * 3 + 1) * 40 + 33]);
    // squeeze-excitation 1×1 convs with bias, and BatchNorm names
    assert.equal(b3Dict.get('features.1.0.block.1.fc1.weight')!.shape, [10, 40, 1, 1]);
    assert.equal(b3Dict.get('features.1.0.block.1.fc1.bias')!.shape, [10]);
    assert.equal(
      [...b3Dict.keys()].filter((key) => key.startsWith('features.0.1.')),
      ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((p) => `features.0.1.${p}`),
    );
    assert.is(b3Dict.get('features.0.1.num_batches_tracked')!.dtype, 'int64');
  } finally {
    model.dispose();
    b3.dispose();
  }
});

test('a state dict loads into another model of the architecture and reproduces it exactly', async () => {
  const source = resnet18.build({ imageSize: 32, seed: 1 });
  const target = resnet18.build({ imageSize: 32, seed: 2 });
  try {
    const dict = await modelToStateDict(source, 'resnet18');
    const report = loadStateDict(target, 'resnet18', dict);
    assert.equal(report.loaded, [...dict.keys()]);
    assert.equal([report.missing, report.unexpected, report.mismatched, report.headReinitialised], [[], [], [], []]);
    assert.equal([...(await modelToStateDict(target, 'resnet18'))], [...dict]);
    const x = tf.randomNormal([1, 32, 32, 3], 0, 1, 'float32', 5);
    const [a, b] = [source, target].map((m) => tf.tidy(() => (m.predict(x) as tf.Tensor).dataSync()));
    assert.equal(a, b);
    x.dispose();
  } finally {
    source.dispose();
    target.dispose();
  }
});

test('strict loading names missing, unexpected and mis-shaped keys, and changes nothing', async () => {
  const model = resnet18.build({ imageSize: 32, seed: 1 });
  try {
    const dict = clone((await modelToStateDict(model, 'resnet18')));
    dict.delete('layer2.1.bn2.running_var');
    dict.set('layer5.0.conv1.weight', { dtype: 'float32', shape: [1], data: Float32Array.of(1) });
    dict.set('layer1.0.conv1.weight', { dtype: 'float32', shape: [64, 64, 1, 1], data: new Float32Array(64 * 64) });
    dict.set('bn1.weight', { dtype: 'int64', shape: [64], data: new BigInt64Array(64) });
    const before = weightOf(model, 'layer3.0.conv1').values;
    const target = resnet18.build({ imageSize: 32, seed: 9 });
    const untouched = weightOf(target, 'layer3.0.conv1').values;
    try {
      loadStateDict(target, 'resnet18', dict);
      assert.unreachable('strict load accepted a bad dict');
    } catch (error) {
      assert.instance(error, UserError);
      const message = (error as Error).message;
      assert.match(message, 'missing keys: layer2.1.bn2.running_var');
      assert.match(message, 'unexpected keys: layer5.0.conv1.weight');
      assert.match(message, 'layer1.0.conv1.weight (checkpoint float32 [64, 64, 1, 1], model float32 [64, 64, 3, 3])');
      assert.match(message, 'bn1.weight (checkpoint int64 [64]');
    }
    assert.equal(weightOf(target, 'layer3.0.conv1').values, untouched, 'a failed strict load writes nothing');
    const report = loadStateDict(target, 'resnet18', dict, { strict: false });
    assert.equal(report.missing, ['layer2.1.bn2.running_var']);
    assert.equal(report.unexpected, ['layer5.0.conv1.weight']);
    assert.equal(report.mismatched, ['bn1.weight', 'layer1.0.conv1.weight']);
    assert.equal(weightOf(target, 'layer3.0.conv1').values, before, 'the rest loads');
    target.dispose();
  } finally {
    model.dispose();
  }
});

test('head swap: a 1000-class ResNet checkpoint keeps the backbone and re-initialises fc', async () => {
  const imagenet = resnet18.build({ imageSize: 32, numClasses: 1000, seed: 1 });
  const model = resnet18.build({ imageSize: 32, seed: 2 });
  try {
    const dict = await modelToStateDict(imagenet, 'resnet18');
    try {
      loadStateDict(model, 'resnet18', dict);
      assert.unreachable();
    } catch (error) {
      assert.instance(error, UserError);
      assert.match((error as Error).message, /fc\.weight \(checkpoint float32 \[1000, 512\], model float32 \[3, 512\]\)/);
      assert.match((error as Error).message, /allow a head swap/);
    }
    const fcBefore = weightOf(model, 'fc').values;
    const report = loadStateDict(model, 'resnet18', dict, { allowHeadSwap: true });
    assert.equal(report.headReinitialised, ['fc.weight', 'fc.bias']);
    assert.equal(report.loaded.length, dict.size - 2);
    assert.equal([report.missing, report.unexpected, report.mismatched], [[], [], []]);
    assert.equal(weightOf(model, 'fc').values, fcBefore, 'the head keeps its initialisation');
    assert.equal(weightOf(model, 'layer4.1.conv2').values, weightOf(imagenet, 'layer4.1.conv2').values, 'the backbone is loaded');
    // A matching 3-class head is loaded even when a swap is allowed.
    const again = loadStateDict(model, 'resnet18', (await modelToStateDict(model, 'resnet18')), { allowHeadSwap: true });
    assert.equal(again.headReinitialised, []);
    assert.ok(again.loaded.includes('fc.weight'));
  } finally {
    imagenet.dispose();
    model.dispose();
  }
});

test("head swap: torchvision's EfficientNet-B3 head (Linear(1536, 1000)) into the dashboard's five-layer head", async () => {
  const imagenet = efficientnet.build({ imageSize: 32, numClasses: 1000, head: 'torchvision', seed: 1 });
  const model = efficientnet.build({ imageSize: 32, seed: 2 });
  try {
    const dict = await modelToStateDict(imagenet, 'efficientnet_b3');
    const report = loadStateDict(model, 'efficientnet_b3', dict, { allowHeadSwap: true });
    assert.equal(report.headReinitialised, ['classifier.1.weight', 'classifier.1.bias', 'classifier.4.weight', 'classifier.4.bias']);
    assert.equal([report.missing, report.unexpected, report.mismatched], [[], [], []]);
    assert.equal(weightOf(model, 'features.7.1.block.3.0').values, weightOf(imagenet, 'features.7.1.block.3.0').values);
  } finally {
    imagenet.dispose();
    model.dispose();
  }
});

test('num_batches_tracked may be absent (older checkpoints) and then reads as 0', async () => {
  const model = resnet18.build({ imageSize: 32, seed: 1 });
  try {
    const dict = clone((await modelToStateDict(model, 'resnet18')));
    dict.set('bn1.num_batches_tracked', { dtype: 'int64', shape: [], data: BigInt64Array.of(41n) });
    loadStateDict(model, 'resnet18', dict);
    assert.is((await modelToStateDict(model, 'resnet18')).get('bn1.num_batches_tracked')!.data[0], 41n);
    for (const key of [...dict.keys()]) if (key.endsWith('num_batches_tracked')) dict.delete(key);
    const report = loadStateDict(model, 'resnet18', dict);
    assert.equal(report.missing, []);
    assert.is((await modelToStateDict(model, 'resnet18')).get('bn1.num_batches_tracked')!.data[0], 0n);
  } finally {
    model.dispose();
  }
});

test("ConvNeXt: layer_scale is the block's own [C, 1, 1] key, LayerNorms map to weight/bias, and the portable build reads the same dict", async () => {
  const convnext = getModel('convnext_tiny');
  const model = convnext.build({ imageSize: 32, seed: 2 });
  const portable = convnext.build({ imageSize: 32, portable: true, initialize: false });
  try {
    const dict = await modelToStateDict(model, convnext.name);
    const keys = [...dict.keys()];
    assert.equal(keys.slice(0, 4), ['features.0.0.weight', 'features.0.0.bias', 'features.0.1.weight', 'features.0.1.bias']);
    // torch lists a module's own parameters before its children's.
    assert.equal(keys.slice(4, 7), ['features.1.0.layer_scale', 'features.1.0.block.0.weight', 'features.1.0.block.0.bias']);
    assert.equal(dict.get('features.1.0.layer_scale')!.shape, [96, 1, 1]);
    assert.ok((dict.get('features.1.0.layer_scale')!.data as Float32Array).every((v) => Math.abs(v - 1e-6) < 1e-12), 'starts at 1e-6');
    assert.equal(dict.get('features.1.0.block.3.weight')!.shape, [384, 96], 'Linear(96, 384) in torch layout');
    assert.equal(dict.get('features.1.0.block.0.weight')!.shape, [96, 1, 7, 7], 'depthwise 7×7');
    const report = loadStateDict(portable, convnext.name, dict);
    assert.is(report.loaded.length, dict.size);
    assert.equal([...(await modelToStateDict(portable, convnext.name))].map(([k, t]) => [k, t.shape]), [...dict].map(([k, t]) => [k, t.shape]));
  } finally {
    model.dispose();
    portable.dispose();
  }
});

test("DenseNet: torchvision's checkpoints' old 'norm.1'-style keys are read as torchvision's loader rewrites them", async () => {
  const densenet = getModel('densenet121');
  const source = densenet.build({ imageSize: 32, seed: 4 });
  const target = densenet.build({ imageSize: 32, initialize: false });
  try {
    const dict = await modelToStateDict(source, densenet.name);
    // As the published file is: old spelling, and no batch counters (it predates them).
    const old: StateDict = new Map(
      [...dict].filter(([key]) => !key.endsWith('num_batches_tracked')).map(([key, t]) => [key.replace(/(denselayer\d+\.(?:norm|conv))([12])\./, '$1.$2.'), t]),
    );
    assert.ok(old.has('features.denseblock1.denselayer1.norm.1.weight') && old.has('features.denseblock4.denselayer16.conv.2.weight'));
    assert.ok(old.has('features.transition1.norm.weight'), 'transition keys never had the old spelling');
    loadStateDict(target, densenet.name, old);
    assert.equal(weightOf(target, 'features.denseblock2.denselayer7.conv2'), weightOf(source, 'features.denseblock2.denselayer7.conv2'));
  } finally {
    source.dispose();
    target.dispose();
  }
});

test('loading and exporting leak no tensors', async () => {
  const model = resnet18.build({ imageSize: 32, seed: 1, initialize: false });
  try {
    const dict = await modelToStateDict(model, 'resnet18');
    const before = tf.memory().numTensors;
    loadStateDict(model, 'resnet18', dict);
    await modelToStateDict(model, 'resnet18');
    assert.is(tf.memory().numTensors, before);
  } finally {
    model.dispose();
  }
});

test.run();
