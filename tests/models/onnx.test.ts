/**
 * The emitted ONNX graph of every registered model, as data (no runtime): its interface, that its
 * weights are exactly the model's torchvision state dict (less BatchNorm's batch counters, which
 * inference never reads) with torch's shapes, that every value is produced before it is read, and
 * that a layer with no emitter is refused by name. Numbers against PyTorch and tfjs: onnx-parity.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { listModels, modelToOnnxGraph, onnxLayerClasses, onnxOpset, type OnnxGraph } from '../../src/models/index.js';
import { modelToStateDict } from '../../src/weights/index.js';

const size = 40;

test.before.each(async () => {
  await useBackend('wasm');
});

/** Every node reads only the input, a weight, a constant or an earlier node's output. */
function assertTopological(graph: OnnxGraph): void {
  const known = new Set([...graph.inputs.map((v) => v.name), ...graph.weights.map((w) => w.name), ...graph.constants.map((c) => c.name)]);
  for (const node of graph.nodes) {
    for (const input of node.inputs) assert.ok(known.has(input), `${node.name} (${node.opType}) reads ${input} before it exists`);
    for (const output of node.outputs) {
      assert.not.ok(known.has(output), `${output} is produced twice`);
      known.add(output);
    }
  }
  for (const output of graph.outputs) assert.ok(known.has(output.name), `the graph output ${output.name} is produced`);
}

for (const entry of listModels()) {
  for (const portable of [false, true]) {
    test(`${entry.name}${portable ? ' (portable build)' : ''}: the ONNX graph reads exactly the state dict's weights, in torch's shapes, NCHW in and logits out`, async () => {
      const model = entry.build({ imageSize: size, numClasses: 5, initialize: false, portable });
      try {
        for (const layer of model.layers) {
          if (layer.getClassName() !== 'InputLayer') assert.ok(onnxLayerClasses.includes(layer.getClassName()), `${layer.name}: ${layer.getClassName()} has an emitter`);
        }
        const graph = modelToOnnxGraph(model, entry.name);
        assert.is(graph.opset, onnxOpset);
        assert.ok(graph.opset >= 17);
        assert.equal(graph.inputs, [{ name: 'input', shape: ['batch', 3, size, size] }]);
        assert.equal(graph.outputs, [{ name: 'logits', shape: ['batch', 5] }]);
        const dict = await modelToStateDict(model, entry.name);
        const expected = [...dict].filter(([key]) => !key.endsWith('.num_batches_tracked')).map(([key, tensor]) => [key, tensor.shape]);
        const declared = graph.weights.map((weight) => [weight.name, [...weight.shape]]);
        assert.equal(
          declared.sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
          expected.sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
        );
        assertTopological(graph);
        // Dropout and stochastic depth are identities at inference: no node for them.
        assert.not.ok(graph.nodes.some((node) => node.opType === 'Dropout'));
      } finally {
        model.dispose();
      }
    });
  }
}

test('zero padding before a strided conv or max pool is folded into its pads; conv pads follow torch (k//2)', () => {
  const model = listModels()[0]!.build({ imageSize: size, initialize: false });
  try {
    const graph = modelToOnnxGraph(model, 'resnet18');
    assert.not.ok(graph.nodes.some((node) => node.opType === 'Pad'), 'no separate Pad node');
    const conv1 = graph.nodes.find((node) => node.name === 'conv1')!;
    assert.equal(conv1.attributes['pads'], { kind: 'ints', value: [3, 3, 3, 3] });
    assert.equal(conv1.attributes['strides'], { kind: 'ints', value: [2, 2] });
    const pool = graph.nodes.find((node) => node.opType === 'MaxPool')!;
    assert.equal(pool.attributes['pads'], { kind: 'ints', value: [1, 1, 1, 1] });
    const stride1 = graph.nodes.find((node) => node.name === 'layer1.0.conv1')!;
    assert.equal(stride1.attributes['pads'], { kind: 'ints', value: [1, 1, 1, 1] });
    const downsample = graph.nodes.find((node) => node.name === 'layer2.0.downsample.0')!;
    assert.equal(downsample.attributes['pads'], { kind: 'ints', value: [0, 0, 0, 0] });
  } finally {
    model.dispose();
  }
});

test('a layer class without an emitter is refused, naming the layer and its class', () => {
  const input = tfl.input({ shape: [8, 8, 3], name: 'input' });
  const output = tfl.layers.flatten({ name: 'odd.flatten' }).apply(tfl.layers.conv2d({ name: 'conv', filters: 2, kernelSize: 1 }).apply(input)) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  try {
    assert.throws(() => modelToOnnxGraph(model, 'odd'), /odd\.flatten is a Flatten, which has no ONNX emitter/);
  } finally {
    model.dispose();
  }
});

test('a fused activation inside a conv is refused rather than dropped', () => {
  const input = tfl.input({ shape: [8, 8, 3], name: 'input' });
  const output = tfl.layers.conv2d({ name: 'conv', filters: 2, kernelSize: 1, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  try {
    assert.throws(() => modelToOnnxGraph(model, 'fused'), /conv: a fused 'relu' activation has no ONNX emitter/);
  } finally {
    model.dispose();
  }
});

test.run();
