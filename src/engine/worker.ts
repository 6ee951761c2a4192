/**
 * A data-parallel worker: its own instance of the selected tfjs backend, its own replica built from
 * the provider by name, and views onto the main thread's shared parameter and buffer memory — and,
 * for the step engine, onto the gradient and optimizer memory. It loads parameters when their
 * version changes, so every replica holds the same bits; a training worker also runs the replica
 * reduce on its share of the parameters.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../backend/index.js';
import type { ModelBuildOptions } from '../models/index.js';
import { loadProvider } from './provider.js';
import { ReplicaReduce } from './reduce.js';
import { BoundReplica, Replica, type MicroBatch } from './replica.js';
import type { OptimizerConfig } from './types.js';

export interface WorkerInit {
  providerModule: string | undefined;
  model: string;
  build: ModelBuildOptions;
  /** the name of the tfjs backend the main thread's handle activates */
  backend: string;
  params: SharedArrayBuffer;
  buffers: SharedArrayBuffer;
  /** The step engine's workers only: an inference engine's workers predict and nothing else. */
  training?: WorkerTraining;
}

export interface WorkerTraining {
  grads: SharedArrayBuffer;
  /** every worker's gradient slice, in worker order, the reduced sum, and the optimizer's state */
  allGrads: SharedArrayBuffer[];
  reduced: SharedArrayBuffer;
  optimizer: OptimizerConfig;
  slots: Record<string, SharedArrayBuffer>;
}

export type WorkerRequest =
  | { id: number; type: 'gradients'; version: number; micro: MicroBatch[]; scale: number; seed: number; step: number }
  | { id: number; type: 'predict'; version: number; images: Float32Array; size: number; chunk: number }
  | { id: number; type: 'reduce'; from: number; to: number }
  | { id: number; type: 'update'; from: number; to: number; lr: number; t: number; coefficient: number }
  | { id: number; type: 'numTensors' };

/** A training worker's gradient slice and its share of the replica reduce. */
interface TrainingMemory {
  grads: Float32Array;
  reducer: ReplicaReduce;
}

function trainingMemory(training: WorkerTraining, params: Float32Array): TrainingMemory {
  const reducer = new ReplicaReduce(training.optimizer, {
    replicaGrads: training.allGrads.map((buffer) => new Float32Array(buffer)),
    reduced: new Float32Array(training.reduced),
    params,
    slots: Object.fromEntries(Object.entries(training.slots).map(([name, buffer]) => [name, new Float32Array(buffer)])),
  });
  return { grads: new Float32Array(training.grads), reducer };
}

/** The reply to one request (and what it transfers), or an Error for a request this worker cannot serve. */
async function serve(request: WorkerRequest, bound: BoundReplica, training: TrainingMemory | undefined): Promise<[Record<string, unknown>, ArrayBuffer[]]> {
  if (request.type === 'predict') {
    const logits = await bound.predict(request.version, request.images, request.size, request.chunk);
    return [{ logits }, [logits.buffer as ArrayBuffer]];
  }
  if (request.type === 'numTensors') return [{ numTensors: tf.memory().numTensors }, []];
  if (!training) throw new Error(`an inference worker was asked for '${request.type}'`);
  if (request.type === 'gradients') {
    return [{ results: await bound.gradients(request.version, request.micro, request.scale, request.seed, request.step, training.grads) }, []];
  }
  if (request.type === 'reduce') return [{ squares: training.reducer.reduce(request.from, request.to) }, []];
  training.reducer.update(request.from, request.to, request.lr, request.t, request.coefficient);
  return [{}, []];
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker.ts must run in a worker thread');
  const init = workerData as WorkerInit;
  await useBackend(init.backend);
  const provider = await loadProvider(init.providerModule);
  const replica = new Replica(provider, init.model, { ...init.build, initialize: false });
  const params = new Float32Array(init.params);
  const buffers = new Float32Array(init.buffers);
  if (params.length !== replica.layout.paramCount || buffers.length !== replica.layout.bufferCount) {
    throw new Error(`worker replica has ${replica.layout.paramCount}+${replica.layout.bufferCount} values, the engine ${params.length}+${buffers.length}`);
  }
  const bound = new BoundReplica(replica, params, buffers);
  const training = init.training ? trainingMemory(init.training, params) : undefined;
  port.on('message', async (request: WorkerRequest) => {
    try {
      const [reply, transfer] = await serve(request, bound, training);
      port.postMessage({ id: request.id, ok: true, ...reply }, transfer);
    } catch (error) {
      port.postMessage({ id: request.id, ok: false, error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) });
    }
  });
  port.postMessage({ ready: true });
}

main().catch((error: unknown) => {
  parentPort?.postMessage({ ready: false, error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) });
});
