/**
 * ONNX model files in and out, through protobufjs and ONNX's own schema (onnx-schema.ts): a graph
 * emitted by src/models/onnx/ plus a torchvision state dict becomes one ModelProto whose initializers
 * are the state dict's keys in torch's layout; reading a file back gives its graph's interface and its
 * initializers as a state dict, refusing a file that is not ONNX, holds non-finite weights, or is not
 * the graph osteo emits for the model it is meant to be.
 */
import { readFile } from 'node:fs/promises';
import protobuf from 'protobufjs';
import { osteoVersion, UserError, writeFileAtomic } from '../util/index.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import { ensureGraphHost } from '../backend/index.js';
import { minImageSize, modelToOnnxGraph, type ModelEntry, type ModelName, type OnnxAttribute, type OnnxGraph } from '../models/index.js';
import { modelToStateDict } from './keymap.js';
import { onnxProtoSchema } from './onnx-schema.js';
import { numel, type StateDict } from './types.js';

const root = protobuf.parse(onnxProtoSchema, { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');

/** ONNX 1.12's IR version, the one that goes with opset 17. */
export const onnxIrVersion = 8;
/** TensorProto.DataType. */
const FLOAT = 1;
const INT64 = 7;
/** AttributeProto.AttributeType. */
const attributeTypes = { float: 1, int: 2, string: 3, ints: 7 } as const;

function rawFloat32(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

function rawInt64(values: readonly number[]): Uint8Array {
  return new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer);
}

function attributeProto(name: string, attribute: OnnxAttribute) {
  const type = attributeTypes[attribute.kind];
  if (attribute.kind === 'int') return { name, type, i: attribute.value };
  if (attribute.kind === 'float') return { name, type, f: attribute.value };
  if (attribute.kind === 'string') return { name, type, s: new TextEncoder().encode(attribute.value) };
  return { name, type, ints: [...attribute.value] };
}

function valueInfo(info: OnnxGraph['inputs'][number]) {
  const dim = info.shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name: info.name, type: { tensor_type: { elem_type: FLOAT, shape: { dim } } } };
}

/**
 * One ModelProto: `graph` with every weight it declares taken from `weights` (a torchvision state
 * dict). A missing or mis-shaped weight is a bug in the caller (the graph and the dict come from one model).
 */
export function encodeOnnx(graph: OnnxGraph, weights: StateDict, metadata: Record<string, string> = {}): Uint8Array {
  const initializers = graph.weights.map((ref) => {
    const tensor = weights.get(ref.name);
    if (tensor === undefined) throw new Error(`ONNX graph ${graph.name} reads ${ref.name}, which the state dict lacks`);
    if (tensor.dtype !== 'float32' || tensor.shape.join(',') !== ref.shape.join(',')) {
      throw new Error(`ONNX graph ${graph.name} reads ${ref.name} as float32 [${ref.shape.join(', ')}], the state dict has ${tensor.dtype} [${tensor.shape.join(', ')}]`);
    }
    return { name: ref.name, dims: [...ref.shape], data_type: FLOAT, raw_data: rawFloat32(tensor.data as Float32Array) };
  });
  const constants = graph.constants.map((constant) => ({
    name: constant.name,
    dims: [...constant.shape],
    data_type: constant.dtype === 'float32' ? FLOAT : INT64,
    raw_data: constant.dtype === 'float32' ? rawFloat32(Float32Array.from(constant.values)) : rawInt64(constant.values),
  }));
  const message = ModelProto.fromObject({
    ir_version: onnxIrVersion,
    opset_import: [{ domain: '', version: graph.opset }],
    producer_name: 'osteo',
    producer_version: osteoVersion,
    graph: {
      name: graph.name,
      node: graph.nodes.map((node) => ({
        op_type: node.opType,
        name: node.name,
        input: [...node.inputs],
        output: [...node.outputs],
        attribute: Object.entries(node.attributes).map(([name, attribute]) => attributeProto(name, attribute)),
      })),
      initializer: [...initializers, ...constants],
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
    },
    metadata_props: Object.entries(metadata).map(([key, value]) => ({ key, value })),
  });
  return ModelProto.encode(message).finish();
}

/** Writes `encodeOnnx(...)` to `path` atomically. */
export async function writeOnnx(path: string, graph: OnnxGraph, weights: StateDict, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, encodeOnnx(graph, weights, metadata));
}

/** What a read ONNX file holds: its interface, opset, metadata and float32 initializers (torch layout). */
export interface OnnxFile {
  opset: number;
  inputs: { name: string; shape: (number | string)[] }[];
  outputs: { name: string; shape: (number | string)[] }[];
  initializers: StateDict;
  metadata: Record<string, string>;
}

interface DecodedTensor {
  name?: string;
  dims?: number[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int64_data?: number[];
  data_location?: number;
}

interface DecodedValueInfo {
  name?: string;
  type?: { tensor_type?: { shape?: { dim?: { dim_value?: number; dim_param?: string }[] } } };
}

/** toObject's `longs: Number` gives int64 fields as numbers (dims and shapes are far below 2^53). */
const toNumber = (value: number | undefined): number => value ?? 0;

function shapeOf(info: DecodedValueInfo): (number | string)[] {
  return (info.type?.tensor_type?.shape?.dim ?? []).map((dim) => (dim.dim_param ? dim.dim_param : toNumber(dim.dim_value)));
}

function floatValues(source: string, tensor: DecodedTensor, count: number): Float32Array {
  if (tensor.data_location === 1) throw new UserError(`${source}: initializer ${tensor.name} is stored outside the file (external data); osteo reads self-contained .onnx files only`);
  let values: Float32Array;
  if (tensor.raw_data !== undefined && tensor.raw_data.length > 0) {
    if (tensor.raw_data.length !== count * 4) throw new UserError(`${source}: initializer ${tensor.name} holds ${tensor.raw_data.length} bytes for ${count} float32 values: the file is damaged`);
    values = new Float32Array(count);
    new Uint8Array(values.buffer).set(tensor.raw_data);
  } else {
    const data = tensor.float_data ?? [];
    if (data.length !== count) throw new UserError(`${source}: initializer ${tensor.name} holds ${data.length} values for its ${count}: the file is damaged`);
    values = Float32Array.from(data);
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw new UserError(`${source}: initializer ${tensor.name} holds a non-finite value (${values[i]}) at index ${i}: these weights are broken`);
  }
  return values;
}

/** Decodes ONNX bytes; `source` names them in errors (a path, usually). */
export function decodeOnnx(bytes: Uint8Array, source: string): OnnxFile {
  let decoded: ReturnType<typeof ModelProto.decode>;
  try {
    decoded = ModelProto.decode(bytes);
  } catch (error) {
    throw new UserError(`${source} is not a readable ONNX model (${(error as Error).message}): the file is truncated, damaged or of another format`);
  }
  const model = ModelProto.toObject(decoded, { longs: Number, defaults: false }) as {
    graph?: { input?: DecodedValueInfo[]; output?: DecodedValueInfo[]; initializer?: DecodedTensor[] };
    opset_import?: { domain?: string; version?: number }[];
    metadata_props?: { key?: string; value?: string }[];
  };
  if (model.graph === undefined) throw new UserError(`${source} holds no ONNX graph: the file is truncated, damaged or of another format`);
  const opset = model.opset_import?.find((entry) => (entry.domain ?? '') === '')?.version ?? 0;
  const initializers: StateDict = new Map();
  const initializerNames = new Set<string>();
  for (const tensor of model.graph.initializer ?? []) {
    const name = tensor.name ?? '';
    initializerNames.add(name);
    if (tensor.data_type !== FLOAT) continue; // int64 constants (axes, shapes) belong to the graph, not to the weights
    const shape = (tensor.dims ?? []).map(toNumber);
    initializers.set(name, { dtype: 'float32', shape, data: floatValues(source, tensor, numel(shape)) });
  }
  const interfaceOf = (infos: DecodedValueInfo[] | undefined) =>
    (infos ?? []).filter((info) => !initializerNames.has(info.name ?? '')).map((info) => ({ name: info.name ?? '', shape: shapeOf(info) }));
  const metadata = Object.fromEntries((model.metadata_props ?? []).map((entry) => [entry.key ?? '', entry.value ?? '']));
  return { opset, inputs: interfaceOf(model.graph.input), outputs: interfaceOf(model.graph.output), initializers, metadata };
}

export async function readOnnx(path: string): Promise<OnnxFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as Error).message}`);
  }
  return decodeOnnx(bytes, path);
}

const shapeText = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;

/**
 * The weights of an ONNX file that must be `expected` (the graph osteo emits for the model, size and
 * classes it is meant to be): same input and output names and shapes, and every weight the graph
 * reads present under its torchvision key with its shape. Anything else is refused with the first
 * difference; the result is a torchvision state dict (no BatchNorm counters: ONNX does not carry them).
 */
export function onnxWeightsFor(file: OnnxFile, expected: OnnxGraph, source: string): StateDict {
  const describe = `${expected.name} (input ${shapeText(expected.inputs[0]!.shape)})`;
  const refuse = (reason: string) => new UserError(`${source} is not osteo's ONNX graph of ${describe}: ${reason}`);
  for (const [kind, theirs, ours] of [
    ['input', file.inputs, expected.inputs],
    ['output', file.outputs, expected.outputs],
  ] as const) {
    if (theirs.length !== ours.length) throw refuse(`it has ${theirs.length} ${kind}s, expected ${ours.length}`);
    ours.forEach((info, i) => {
      const their = theirs[i]!;
      if (their.name !== info.name || shapeText(their.shape) !== shapeText(info.shape)) {
        throw refuse(`its ${kind} is '${their.name}' ${shapeText(their.shape)}, expected '${info.name}' ${shapeText(info.shape)}`);
      }
    });
  }
  const dict: StateDict = new Map();
  const missing: string[] = [];
  for (const ref of expected.weights) {
    const tensor = file.initializers.get(ref.name);
    if (tensor === undefined) {
      missing.push(ref.name);
      continue;
    }
    if (shapeText(tensor.shape) !== shapeText(ref.shape)) throw refuse(`initializer ${ref.name} is ${shapeText(tensor.shape)}, expected ${shapeText(ref.shape)}`);
    dict.set(ref.name, tensor);
  }
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` … and ${missing.length - 5} more` : '');
    throw refuse(`it lacks the initializers ${shown} (initializer names are torchvision state-dict keys)`);
  }
  return dict;
}

/**
 * A built model as ONNX bytes: its emitted graph (src/models/onnx/) with its weights as
 * torchvision-keyed initializers. The bytes are decoded again and checked against the graph before
 * they are returned, so a file written from them is known to be complete.
 */
export async function modelToOnnx(model: tfl.LayersModel, name: ModelName, metadata: Record<string, string> = {}): Promise<{ bytes: Uint8Array; graph: OnnxGraph }> {
  const graph = modelToOnnxGraph(model, name);
  const bytes = encodeOnnx(graph, await modelToStateDict(model, name), metadata);
  onnxWeightsFor(decodeOnnx(bytes, `the ONNX graph of ${name}`), graph, `the ONNX graph of ${name}`);
  return { bytes, graph };
}

/**
 * The weights of an `osteo export --format onnx` file for `entry` with `numClasses` classes, checked
 * against the graph osteo emits for that model at the file's own input size (the weights do not
 * depend on the size): a damaged file, or one that is not osteo's graph of this model (another
 * interface, a missing or mis-shaped initializer), is refused with the first difference. Only the
 * initializers are taken; osteo runs its own emitted graph with them, never the file's nodes.
 */
/** The largest input size at which a file's graph is rebuilt to check it (an osteo export is at most a few hundred pixels). */
const maxOnnxCheckSize = 2048;

export async function readOnnxStateDict(path: string, entry: ModelEntry, options: { numClasses: number; imageSize: number }): Promise<StateDict> {
  const file = await readOnnx(path);
  const declared = file.inputs[0]?.shape[2];
  // A size no model is built at (a foreign file's) is not tried: the graph at the requested size then names the difference.
  const size = typeof declared === 'number' && Number.isInteger(declared) && declared >= minImageSize && declared <= maxOnnxCheckSize ? declared : options.imageSize;
  await ensureGraphHost();
  const model = entry.build({ imageSize: size, numClasses: options.numClasses, initialize: false });
  try {
    return onnxWeightsFor(file, modelToOnnxGraph(model, entry.name), path);
  } finally {
    model.dispose();
  }
}
