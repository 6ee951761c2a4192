/**
 * The inference engine on onnxruntime: a trained state dict becomes the model's ONNX graph
 * (src/models/onnx/, emitted from the model definition) with those weights, one session on the
 * handle's execution provider (`capabilities.onnxSessions`), then logits for any number of images in
 * their order, cut into passes of at most `passLimit` images. `workers` means the session's intra-op
 * threads here: one session spreads each pass over them (docs/onnx.md, *Threads*).
 *
 * Grad-CAM runs a second graph (src/models/onnx/cam.ts): the same forward read at the CAM layer plus
 * the head's backward as ONNX ops, built on first use for the layer asked for and kept until dispose.
 *
 * The tfjs model is built only to emit the graphs and dropped at once; nothing of it stays alive.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ensureGraphHost, type BackendHandle, type OnnxSession, type OnnxSessions } from '../backend/index.js';
import { camGraphOf, modelToOnnxGraph, type OnnxCamGraph } from '../models/index.js';
import { UserError } from '../util/index.js';
import { encodeOnnx, type StateDict } from '../weights/index.js';
import { microBatchLimit } from './engine.js';
import { throwPendingFault, translateFault, type PassContext } from './parallel.js';
import { loadProvider, type ModelProvider } from './provider.js';
import { Replica } from './replica.js';
import type { CamFeatures, FeatureRequest, InferenceEngine, InferenceEngineOptions } from './types.js';

/**
 * Images per session run where the provider states no memory bound. onnxruntime's CPU provider
 * computes a batch as one GEMM per layer, so larger passes gain little beyond a few dozen images
 * while their activations grow linearly (ResNet50 at 224 px holds ~40 MB of layer outputs per image).
 */
export const onnxPassImages = 32;

interface CamSession {
  cam: OnnxCamGraph;
  session: OnnxSession;
}

/** What the engine keeps of the model once the graphs are emitted: the weights (torchvision keys) and how to rebuild it for another graph. */
interface ModelSource {
  provider: ModelProvider;
  options: InferenceEngineOptions;
  weights: StateDict;
}

/** The model built (no random initialization) and strictly loaded, handed to `use`, then disposed whatever happens. */
async function withModel<T>(source: ModelSource, use: (replica: Replica) => T | Promise<T>): Promise<T> {
  await ensureGraphHost();
  const { provider, options } = source;
  const replica = new Replica(provider, options.model, { imageSize: options.imageSize, numClasses: options.numClasses, initialize: false });
  try {
    await provider.loadStateDict(replica.model, options.model, source.weights, { allowHeadSwap: false });
    return await use(replica);
  } finally {
    replica.dispose();
  }
}

class OnnxInferenceEngine implements InferenceEngine {
  private disposed = false;
  private readonly cams = new Map<string, Promise<CamSession>>();

  constructor(
    private readonly source: ModelSource,
    private readonly sessions: OnnxSessions,
    private readonly session: OnnxSession,
    readonly workers: number,
    private readonly passLimit: number,
    private readonly handle: BackendHandle,
  ) {}

  private get options(): InferenceEngineOptions {
    return this.source.options;
  }

  private checkOpen(): void {
    if (this.disposed) throw new Error('the inference engine has been disposed');
  }

  private pass(perPass: number): PassContext {
    return { doing: 'running', model: this.options.model, imageSize: this.options.imageSize, perPass };
  }

  async predict(images: Float32Array, count: number): Promise<Float32Array> {
    this.checkOpen();
    const { imageSize: s, numClasses } = this.options;
    const per = s * s * 3;
    if (!Number.isInteger(count) || count < 0 || images.length !== count * per) throw new UserError(`images hold ${images.length} floats; ${count} images of ${s}² need ${count * per}`);
    const out = new Float32Array(count * numClasses);
    const chunk = Math.max(1, Math.min(count, this.passLimit));
    try {
      for (let start = 0; start < count; start += chunk) {
        const n = Math.min(chunk, count - start);
        const logits = await this.session.run(toNchw(images.subarray(start * per, (start + n) * per), n, s), [n, 3, s, s]);
        if (logits.length !== n * numClasses) throw new Error(`the ONNX graph of ${this.options.model} gave ${logits.length} logits for ${n} images of ${numClasses} classes`);
        out.set(logits, start * numClasses);
      }
    } catch (error) {
      throw translateFault(this.handle.faults, error, this.pass(chunk));
    }
    throwPendingFault(this.handle.faults, this.pass(chunk));
    return out;
  }

  async features(image: Float32Array, request: FeatureRequest): Promise<CamFeatures> {
    this.checkOpen();
    const s = this.options.imageSize;
    if (image.length !== s * s * 3) throw new UserError(`Grad-CAM needs one image of ${s}×${s}×3 values, got ${image.length} values`);
    const { cam, session } = await this.camSession(request.layer);
    if (!Number.isInteger(request.classIndex) || request.classIndex < 0 || request.classIndex >= cam.classes) {
      throw new UserError(`class ${request.classIndex} is outside the model's ${cam.classes} classes`);
    }
    let row: Float32Array;
    try {
      row = await session.run(toNchw(image, 1, s), [1, 3, s, s]);
    } catch (error) {
      throw translateFault(this.handle.faults, error, { ...this.pass(1), doing: 'computing Grad-CAM of' });
    }
    return camFromRow(cam, row, request.classIndex);
  }

  /** The CAM graph's session for `layer`, built once (concurrent callers share the one being built). */
  private camSession(layer: string): Promise<CamSession> {
    let pending = this.cams.get(layer);
    if (pending === undefined) {
      pending = this.buildCamSession(layer);
      this.cams.set(layer, pending);
      pending.catch(() => this.cams.delete(layer));
    }
    return pending;
  }

  private async buildCamSession(layer: string): Promise<CamSession> {
    const { options, weights } = this.source;
    const { cam, bytes } = await withModel(this.source, async (replica) => {
      const graph = camGraphOf(replica.model, options.model, layer);
      return { cam: graph, bytes: encodeOnnx(graph.graph, weights) };
    });
    const session = await this.sessions.create(bytes, { threads: this.workers, label: { model: options.model, imageSize: options.imageSize } });
    if (this.disposed) {
      await session.release();
      throw new Error('the inference engine was disposed while Grad-CAM was being prepared');
    }
    return { cam, session };
  }

  async numTensors(): Promise<number[]> {
    return [tf.memory().numTensors];
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const cams = await Promise.allSettled([...this.cams.values()]);
    this.cams.clear();
    await Promise.all([this.session.release(), ...cams.flatMap((cam) => (cam.status === 'fulfilled' ? [cam.value.session.release()] : []))]);
  }
}

/** NHWC images (count·S·S·3) as NCHW (count·3·S·S), the layout of the emitted graphs' input. */
export function toNchw(images: Float32Array, count: number, size: number): Float32Array {
  const plane = size * size;
  const out = new Float32Array(count * 3 * plane);
  for (let n = 0; n < count; n++) {
    const base = n * 3 * plane;
    for (let p = 0; p < plane; p++) {
      const src = base + p * 3;
      out[base + p] = images[src]!;
      out[base + plane + p] = images[src + 1]!;
      out[base + 2 * plane + p] = images[src + 2]!;
    }
  }
  return out;
}

/** The CAM graph's output row cut into A and the gradient of class `classIndex` (both height×width×channels). */
export function camFromRow(cam: OnnxCamGraph, row: Float32Array, classIndex: number): CamFeatures {
  const block = cam.height * cam.width * cam.channels;
  if (row.length !== block * (1 + cam.classes)) throw new Error(`the Grad-CAM graph of ${cam.layer} gave ${row.length} values, expected ${block * (1 + cam.classes)}`);
  const start = block * (1 + classIndex);
  return {
    layer: cam.layer,
    height: cam.height,
    width: cam.width,
    channels: cam.channels,
    activations: row.slice(0, block),
    gradients: row.slice(start, start + block),
  };
}

/**
 * The onnxruntime inference engine on `sessions` (the handle's provider): the weights loaded strictly
 * (the errors of the tfjs path: a missing or extra key, a wrong shape), the graph emitted and one
 * session built with `options.workers` intra-op threads.
 */
export async function createOnnxInferenceEngine(options: InferenceEngineOptions, sessions: OnnxSessions): Promise<InferenceEngine> {
  const threads = options.workers;
  if (!Number.isInteger(threads) || threads < 1) throw new UserError(`onnxruntime threads (--workers) must be a positive integer, got ${threads}`);
  const provider = await loadProvider(options.providerModule);
  const memory = options.backend.capabilities.activationMemory;
  const { bytes, weights, passLimit } = await withModel({ provider, options, weights: options.weights }, async (replica) => {
    // the model's own state dict: the strictly loaded weights under their canonical torchvision keys
    const canonical = await provider.toStateDict(replica.model, options.model);
    const graph = modelToOnnxGraph(replica.model, options.model);
    return { bytes: encodeOnnx(graph, canonical), weights: canonical, passLimit: microBatchLimit(replica, memory) ?? onnxPassImages };
  });
  const session = await sessions.create(bytes, { threads, label: { model: options.model, imageSize: options.imageSize } });
  return new OnnxInferenceEngine({ provider, options, weights }, sessions, session, threads, Math.min(passLimit, onnxPassImages), options.backend);
}
