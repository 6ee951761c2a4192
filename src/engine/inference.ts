/**
 * The inference engine on tfjs: a trained state dict loaded once, then logits for any number of
 * images, in their order, and the feature maps Grad-CAM reads. The model is built in this thread
 * (Grad-CAM runs here); with workers > 1 replicas in worker threads, each with its own instance of
 * the backend, load the same weights from shared memory and compute the logits, the images cut into
 * one contiguous block per worker. On wasm, where one instance computes on one core, this is what
 * spreads `osteo eval` and `osteo predict` over the machine. No optimizer: nothing here trains.
 */
import * as tf from '@tensorflow/tfjs-core';
import { activateBackend, type BackendCapabilities, type BackendHandle } from '../backend/index.js';
import { UserError } from '../util/index.js';
import { microBatchLimit } from './engine.js';
import { createOnnxInferenceEngine } from './onnx-inference.js';
import { layerFeatures } from './features.js';
import { blocks, sharedFloats, throwPendingFault, translateFault, workerCount, type PassContext } from './parallel.js';
import { WorkerClient, startClients } from './pool.js';
import { loadProvider } from './provider.js';
import { Replica } from './replica.js';
import type { CamFeatures, FeatureRequest, InferenceEngine, InferenceEngineOptions } from './types.js';

/**
 * Below this many images per worker, one more worker thread does not pay for itself: starting one
 * (its own wasm instance and model) and its first, warming pass take about a second, what ResNet18
 * spends on some 30 images at 224 px on one core. Only the default count is bounded by it.
 */
export const imagesPerWorker = 32;

/**
 * How many worker threads inference over `images` images uses: `requested` (never more than there
 * are images), else one per core on a backend that runs in worker threads — as `osteo train` — but
 * no more than pay for themselves (imagesPerWorker), else 1: the model in the caller's thread.
 * On onnxruntime (capabilities.onnxSessions) it is the session's intra-op threads instead: `requested`,
 * else the provider's default; one session spreads every pass over them, however few the images.
 */
export function inferenceWorkers(requested: number | undefined, images: number, capabilities: BackendCapabilities): number {
  const sessions = capabilities.onnxSessions;
  if (sessions !== undefined) return requested ?? sessions.defaultThreads();
  if (requested !== undefined) return Math.max(1, Math.min(requested, images));
  const threads = capabilities.workerThreads;
  if (!threads.trainsInWorkers) return 1;
  return Math.max(1, Math.min(threads.defaultCount(), Math.floor(images / imagesPerWorker)));
}

class TfjsInferenceEngine implements InferenceEngine {
  private disposed = false;

  constructor(
    private readonly master: Replica,
    private readonly clients: WorkerClient[],
    /** the most images one pass may hold on this backend (see microBatchLimit) */
    private readonly passLimit: number | undefined,
    private readonly handle: BackendHandle,
  ) {}

  get workers(): number {
    return Math.max(1, this.clients.length);
  }

  private checkOpen(): void {
    if (this.disposed) throw new Error('the inference engine has been disposed');
  }

  private pass(perPass: number): PassContext {
    return { doing: 'running', model: this.master.name, imageSize: this.master.imageSize, perPass };
  }

  async predict(images: Float32Array, count: number): Promise<Float32Array> {
    this.checkOpen();
    const per = this.master.imageSize * this.master.imageSize * 3;
    if (images.length !== count * per) throw new UserError(`images hold ${images.length} floats; ${count} images of ${this.master.imageSize}² need ${count * per}`);
    const chunk = Math.max(1, Math.min(Math.ceil(count / this.workers), this.passLimit ?? Infinity));
    let parts: Float32Array[];
    try {
      parts = this.clients.length === 0 ? [await this.master.predict(images, count, chunk)] : await this.predictInWorkers(images, count, chunk);
    } catch (error) {
      throw translateFault(this.handle.faults, error, this.pass(chunk));
    }
    throwPendingFault(this.handle.faults, this.pass(chunk));
    const out = new Float32Array(count * this.master.numClasses);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  private predictInWorkers(images: Float32Array, count: number, chunk: number): Promise<Float32Array[]> {
    const per = this.master.imageSize * this.master.imageSize * 3;
    const ranges = blocks(count, this.clients.length);
    // the weights never change, so every replica stays at the version it loaded first
    return Promise.all(this.clients.map((client, w) => {
      const [from, to] = ranges[w]!;
      return from === to ? Promise.resolve(new Float32Array(0)) : client.predict(0, images.slice(from * per, to * per), to - from, chunk);
    }));
  }

  features(image: Float32Array, request: FeatureRequest): Promise<CamFeatures> {
    this.checkOpen();
    return layerFeatures(this.master.model, image, request);
  }

  async numTensors(): Promise<number[]> {
    const local = tf.memory().numTensors;
    if (this.clients.length === 0) return [local];
    return [local, ...(await Promise.all(this.clients.map((c) => c.numTensors())))];
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.all(this.clients.map((c) => c.terminate()));
    this.master.dispose();
  }
}

/** Replicas in worker threads holding the master's weights, which they read from shared memory. */
async function startInferenceWorkers(master: Replica, workers: number, options: InferenceEngineOptions): Promise<WorkerClient[]> {
  const params = sharedFloats(master.layout.paramCount, true);
  const buffers = sharedFloats(master.layout.bufferCount, true);
  await master.readParams(params);
  await master.readBuffers(buffers);
  const init = {
    providerModule: options.providerModule,
    model: options.model,
    build: { imageSize: options.imageSize, numClasses: options.numClasses, initialize: false },
    backend: options.backend.name,
    params: params.buffer as SharedArrayBuffer,
    buffers: buffers.buffer as SharedArrayBuffer,
  };
  return startClients(Array.from({ length: workers }, () => init));
}

/**
 * The inference engine the handle's capabilities call for: onnxruntime where they carry
 * `onnxSessions` (onnx-inference.ts), else tfjs — the model built without its random initialization,
 * which the strictly loaded weights replace entirely, on the handle's backend.
 */
export async function createInferenceEngine(options: InferenceEngineOptions): Promise<InferenceEngine> {
  const handle = options.backend;
  const sessions = handle.capabilities.onnxSessions;
  if (sessions !== undefined) return createOnnxInferenceEngine(options, sessions);
  await activateBackend(handle);
  const workers = workerCount(options.workers, handle.capabilities.workerThreads);
  const provider = await loadProvider(options.providerModule);
  const master = new Replica(provider, options.model, { imageSize: options.imageSize, numClasses: options.numClasses, initialize: false });
  try {
    await provider.loadStateDict(master.model, options.model, options.weights, { allowHeadSwap: false });
    const clients = workers > 1 ? await startInferenceWorkers(master, workers, options) : [];
    return new TfjsInferenceEngine(master, clients, microBatchLimit(master, handle.capabilities.activationMemory), handle);
  } catch (error) {
    master.dispose();
    throw error;
  }
}
