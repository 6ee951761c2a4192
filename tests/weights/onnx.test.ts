/**
 * ONNX files in and out (src/weights/onnx.ts): a model's weights survive encode → decode bit for bit
 * under their torchvision keys and load back into the architecture; truncated bytes, another format,
 * a non-finite weight, and a graph of another input shape or with other initializer names are each
 * refused with the reason.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { getModel, modelToOnnxGraph, type OnnxGraph } from '../../src/models/index.js';
import { UserError } from '../../src/util/index.js';
import { decodeOnnx, encodeOnnx, loadStateDict, modelToOnnx, modelToStateDict, onnxWeightsFor, readOnnx, type StateDict } from '../../src/weights/index.js';
import { refusal } from '../helpers/refusal.js';

const entry = getModel('resnet18');
const size = 32;

interface Fixture {
  graph: OnnxGraph;
  dict: StateDict;
  bytes: Uint8Array;
}
let fixture: Fixture | undefined;

async function resnet(): Promise<Fixture> {
  if (fixture === undefined) {
    await useBackend('wasm');
    const model = entry.build({ imageSize: size, seed: 5 });
    try {
      const graph = modelToOnnxGraph(model, entry.name);
      const dict = await modelToStateDict(model, entry.name);
      fixture = { graph, dict, bytes: encodeOnnx(graph, dict, { model: entry.name }) };
    } finally {
      model.dispose();
    }
  }
  return fixture;
}

function refusedSync(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    assert.instance(error, UserError, `expected a UserError, got ${(error as Error).stack}`);
    return (error as Error).message;
  }
  assert.unreachable('expected a refusal');
  return '';
}

test('encode → decode keeps every weight bit for bit under its torchvision key, and the interface and metadata', async () => {
  const { graph, dict, bytes } = await resnet();
  const file = decodeOnnx(bytes, 'resnet18.onnx');
  assert.is(file.opset, 17);
  assert.equal(file.inputs, [{ name: 'input', shape: ['batch', 3, size, size] }]);
  assert.equal(file.outputs, [{ name: 'logits', shape: ['batch', 3] }]);
  assert.equal(file.metadata, { model: 'resnet18' });
  const weights = onnxWeightsFor(file, graph, 'resnet18.onnx');
  assert.is(weights.size, graph.weights.length);
  for (const [key, tensor] of weights) {
    const original = dict.get(key)!;
    assert.equal(tensor.shape, original.shape, key);
    assert.equal(tensor.data, original.data, `${key} survives`);
  }
  // The weights load back strictly (ONNX carries no batch counters; loadStateDict lets them be absent).
  const model = entry.build({ imageSize: size, initialize: false });
  try {
    const report = loadStateDict(model, entry.name, weights);
    assert.is(report.loaded.length, weights.size);
  } finally {
    model.dispose();
  }
});

test('modelToOnnx returns bytes that decode to the graph it emitted', async () => {
  await useBackend('wasm');
  const model = entry.build({ imageSize: size, seed: 6 });
  try {
    const { bytes, graph } = await modelToOnnx(model, entry.name);
    assert.is(onnxWeightsFor(decodeOnnx(bytes, 'x'), graph, 'x').size, graph.weights.length);
  } finally {
    model.dispose();
  }
});

test('truncated bytes and a file of another format are refused as not ONNX, naming the file', async () => {
  const { bytes } = await resnet();
  for (const cut of [bytes.length - 1000, Math.floor(bytes.length / 2), 7]) {
    const message = refusedSync(() => {
      const file = decodeOnnx(bytes.subarray(0, cut), 'cut.onnx');
      onnxWeightsFor(file, fixture!.graph, 'cut.onnx');
    });
    assert.match(message, /cut\.onnx/);
    assert.match(message, /not a readable ONNX model|holds no ONNX graph|damaged|not osteo's ONNX graph/);
  }
  const zip = new TextEncoder().encode('PK\u0003\u0004 this is a zip, not a protobuf');
  assert.match(refusedSync(() => decodeOnnx(zip, 'weights.pth')), /weights\.pth .*(not a readable ONNX model|holds no ONNX graph)/);
});

test('a missing file is a UserError naming it', async () => {
  assert.match(await refusal(readOnnx('/nonexistent/model.onnx')), /cannot read \/nonexistent\/model\.onnx/);
});

test('a non-finite weight is refused, naming its key', async () => {
  const { graph, dict } = await resnet();
  const broken: StateDict = new Map(dict);
  const key = 'layer3.1.conv2.weight';
  const data = Float32Array.from(dict.get(key)!.data as Float32Array);
  data[17] = Number.NaN;
  broken.set(key, { ...dict.get(key)!, data });
  const bytes = encodeOnnx(graph, broken);
  assert.match(refusedSync(() => decodeOnnx(bytes, 'nan.onnx')), /nan\.onnx: initializer layer3\.1\.conv2\.weight holds a non-finite value \(NaN\) at index 17/);
});

test("a graph of another input size, or whose initializers are not the model's keys, is refused with the difference", async () => {
  const { graph, dict } = await resnet();
  const dir = await mkdtemp(join(tmpdir(), 'osteo-onnx-'));
  try {
    // Another input shape: the graph of the same model at 48 px.
    await useBackend('wasm');
    const other = entry.build({ imageSize: 48, initialize: false });
    const otherGraph = modelToOnnxGraph(other, entry.name);
    other.dispose();
    await writeFile(join(dir, 'big.onnx'), encodeOnnx(otherGraph, dict));
    const sized = refusedSync(() => onnxWeightsFor(decodeOnnx(encodeOnnx(otherGraph, dict), 'big.onnx'), graph, 'big.onnx'));
    assert.match(sized, /big\.onnx is not osteo's ONNX graph of resnet18 \(input \[batch, 3, 32, 32\]\): its input is 'input' \[batch, 3, 48, 48\], expected 'input' \[batch, 3, 32, 32\]/);
    const fromDisk = await readOnnx(join(dir, 'big.onnx'));
    assert.equal(fromDisk.inputs[0]!.shape, ['batch', 3, 48, 48]);

    // Foreign initializer names (a graph exported with its own naming, as torch.onnx.export's onnx::Conv_123).
    const renamed: OnnxGraph = {
      ...graph,
      weights: graph.weights.map((weight) => (weight.name === 'fc.weight' ? { ...weight, name: 'onnx::Gemm_321' } : weight)),
      nodes: graph.nodes.map((node) => ({ ...node, inputs: node.inputs.map((input) => (input === 'fc.weight' ? 'onnx::Gemm_321' : input)) })),
    };
    const foreignDict: StateDict = new Map(dict);
    foreignDict.set('onnx::Gemm_321', dict.get('fc.weight')!);
    const named = refusedSync(() => onnxWeightsFor(decodeOnnx(encodeOnnx(renamed, foreignDict), 'foreign.onnx'), graph, 'foreign.onnx'));
    assert.match(named, /foreign\.onnx is not osteo's ONNX graph of resnet18 .*: it lacks the initializers fc\.weight \(initializer names are torchvision state-dict keys\)/);

    // Another head: the same names, another shape.
    const wide = entry.build({ imageSize: size, numClasses: 4, initialize: false });
    const wideGraph = modelToOnnxGraph(wide, entry.name);
    const wideDict = await modelToStateDict(wide, entry.name);
    wide.dispose();
    const headed = refusedSync(() => onnxWeightsFor(decodeOnnx(encodeOnnx(wideGraph, wideDict), 'four.onnx'), graph, 'four.onnx'));
    assert.match(headed, /its output is 'logits' \[batch, 4\], expected 'logits' \[batch, 3\]/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('encoding refuses (as a bug) a state dict that does not fit the graph', async () => {
  const { graph, dict } = await resnet();
  const short: StateDict = new Map(dict);
  short.delete('bn1.running_var');
  assert.throws(() => encodeOnnx(graph, short), /reads bn1\.running_var, which the state dict lacks/);
});

test.run();
