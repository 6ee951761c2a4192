/**
 * One model replica: it computes the summed gradient of its micro-batches, reports how each
 * micro-batch moved the BatchNorm running statistics, and runs inference. The same class runs in
 * the main thread (one replica) and in each worker thread (data-parallel).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelBuildOptions } from '../models/index.js';
import { weightedCrossEntropy } from './loss.js';
import { layoutOf, readVariables, writeVariables, type Layout } from './params.js';
import type { ModelProvider } from './provider.js';

export interface MicroBatch {
  /** position of this micro-batch in the logical batch: seeds its random masks and orders the BN updates */
  index: number;
  images: Float32Array;
  size: number;
  coefficients: Float32Array; // size × C loss coefficients (see loss.ts)
  labels: Int32Array;
}

export interface MicroResult {
  index: number;
  lossSum: number; // −Σ A ⊙ log p over the micro-batch, before dividing by D
  correct: number;
  /** the buffers after this micro-batch's forward pass, which started from the step's buffers */
  buffers: Float32Array;
}

/** A seed for micro-batch `index` of step `step`: the masks do not depend on which worker runs it. */
export function microBatchSeed(seed: number, step: number, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [step, index]) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h & 0x7fffffff;
}

export class Replica {
  readonly model: tfl.LayersModel;
  readonly layout: Layout;
  readonly imageSize: number;
  readonly numClasses: number;
  private readonly trainable: tf.Variable[];

  constructor(
    readonly provider: ModelProvider,
    readonly name: string,
    build: ModelBuildOptions,
  ) {
    this.model = provider.build(name, build);
    this.layout = layoutOf(this.model);
    const input = this.model.inputs[0]!.shape;
    this.imageSize = input[1] as number;
    const output = this.model.outputs[0]!.shape;
    this.numClasses = output[output.length - 1] as number;
    this.trainable = this.model.trainableWeights.map((v) => v.read() as tf.Variable);
  }

  readParams(out: Float32Array): Promise<void> {
    return readVariables(this.model.trainableWeights, this.layout.params, out);
  }
  readBuffers(out: Float32Array): Promise<void> {
    return readVariables(this.model.nonTrainableWeights, this.layout.buffers, out);
  }
  writeParams(values: Float32Array): void {
    writeVariables(this.model.trainableWeights, this.layout.params, values);
  }
  writeBuffers(values: Float32Array): void {
    writeVariables(this.model.nonTrainableWeights, this.layout.buffers, values);
  }

  /**
   * Gradient of Σ_micro-batches (loss sum · scale) written into `gradOut` (overwritten). The
   * buffers are reset to `startBuffers` before every micro-batch, so each reports its own update.
   */
  async gradients(micro: MicroBatch[], scale: number, seed: number, step: number, startBuffers: Float32Array, gradOut: Float32Array): Promise<MicroResult[]> {
    const results: MicroResult[] = [];
    const s = this.imageSize;
    const c = this.numClasses;
    for (const mb of micro) {
      // every micro-batch starts from the step's running statistics; the engine combines their updates
      this.writeBuffers(startBuffers);
      this.provider.seedRandomness(this.model, microBatchSeed(seed, step, mb.index));
      // the logits leave the gradient's scope kept; everything is read after the pass, in one batch of reads
      let logits: tf.Tensor2D | undefined;
      const { value, grads } = tf.variableGrads(() => {
        const x = tf.tensor4d(mb.images, [mb.size, s, s, 3]);
        logits = tf.keep(this.model.apply(x, { training: true }) as tf.Tensor2D);
        const coefficients = tf.tensor2d(mb.coefficients, [mb.size, c]);
        return weightedCrossEntropy(logits, coefficients, scale);
      }, this.trainable);
      const gradList = this.trainable.map((v) => grads[v.name]!);
      const buffers = new Float32Array(this.layout.bufferCount);
      let reads: [Float32Array, Float32Array, ...Float32Array[]];
      try {
        [reads] = await Promise.all([
          Promise.all([logits!.data(), value.data(), ...gradList.map((g) => g.data())]) as Promise<[Float32Array, Float32Array, ...Float32Array[]]>,
          this.readBuffers(buffers),
        ]);
      } finally {
        tf.dispose([logits!, value, ...gradList]);
      }
      const [logitValues, lossValue, ...gradValues] = reads;
      const correct = countCorrect(logitValues, mb.labels, mb.size, c);
      const lossSum = lossValue[0]! / scale;
      gradValues.forEach((data, i) => {
        const offset = this.layout.params[i]!.offset;
        if (results.length === 0) gradOut.set(data, offset);
        else addInto(gradOut, offset, data);
      });
      results.push({ index: mb.index, lossSum, correct, buffers });
    }
    return results;
  }

  /** Inference-mode logits for `size` images, `chunk` at a time. */
  async predict(images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    const s = this.imageSize;
    const per = s * s * 3;
    const out = new Float32Array(size * this.numClasses);
    for (let start = 0; start < size; start += chunk) {
      const n = Math.min(chunk, size - start);
      const logits = tf.tidy(() => {
        const x = tf.tensor4d(images.subarray(start * per, (start + n) * per), [n, s, s, 3]);
        return this.model.apply(x, { training: false }) as tf.Tensor;
      });
      try {
        out.set((await logits.data()) as Float32Array, start * this.numClasses);
      } finally {
        logits.dispose();
      }
    }
    return out;
  }

  /** Floats of activation a forward pass holds per image (outputs of every layer), to size micro-batches. */
  activationFloatsPerImage(): number {
    return this.layerOutputFloats().reduce((a, b) => a + b, 0);
  }

  /** Floats of the largest single layer output per image: a GPU caps the size of one tensor. */
  largestActivationFloatsPerImage(): number {
    return Math.max(...this.layerOutputFloats());
  }

  /** Per image, the floats of each layer output. */
  private layerOutputFloats(): number[] {
    const floats: number[] = [];
    for (const layer of this.model.layers) {
      let shapes: tfl.Shape | tfl.Shape[];
      try {
        shapes = layer.outputShape;
      } catch {
        continue; // a layer used at several call sites has no single output shape
      }
      const list = (Array.isArray(shapes[0]) ? shapes : [shapes]) as (number | null)[][];
      for (const shape of list) floats.push(shape.slice(1).reduce<number>((a, b) => a * (b ?? 1), 1));
    }
    return floats;
  }

  dispose(): void {
    this.model.dispose();
  }
}

/**
 * A replica training on the engine's parameter and running-statistics memory (shared with the worker
 * threads, or the main thread's own). It reloads them only when the engine's version moved on, or
 * when its own last pass left its statistics at a micro-batch's update.
 */
export class BoundReplica {
  private loadedVersion = -1;
  private buffersCurrent = false;

  constructor(
    readonly replica: Replica,
    private readonly params: Float32Array,
    private readonly buffers: Float32Array,
  ) {}

  private sync(version: number): void {
    if (version !== this.loadedVersion) {
      this.replica.writeParams(this.params);
      this.loadedVersion = version;
      this.buffersCurrent = false;
    }
    if (!this.buffersCurrent) this.replica.writeBuffers(this.buffers);
    this.buffersCurrent = true;
  }

  async gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number, gradOut: Float32Array): Promise<MicroResult[]> {
    this.sync(version);
    this.buffersCurrent = false;
    return this.replica.gradients(micro, scale, seed, step, this.buffers, gradOut);
  }

  predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    this.sync(version);
    return this.replica.predict(images, size, chunk);
  }
}

function addInto(out: Float32Array, offset: number, values: Float32Array): void {
  for (let j = 0; j < values.length; j++) out[offset + j] = out[offset + j]! + values[j]!;
}

export function countCorrect(logits: Float32Array, labels: Int32Array, size: number, classes: number): number {
  let correct = 0;
  for (let i = 0; i < size; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (logits[i * classes + k]! > logits[i * classes + best]!) best = k;
    if (best === labels[i]) correct++;
  }
  return correct;
}
