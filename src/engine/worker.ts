/**
 * A data-parallel worker: its own instance of the selected tfjs backend, its own replica built from
 * the provider by name, and views onto the main thread's shared parameter, buffer, gradient and
 * optimizer memory. It loads parameters when their version changes, so every replica holds the same
 * bits, and runs the replica reduce on its share of the parameters.
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
  /** the tfjs backend the main thread selected */
  backend: string;
  params: SharedArrayBuffer;
  buffers: SharedArrayBuffer;
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

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker.ts must run in a worker thread');
  const init = workerData as WorkerInit;
  await useBackend(init.backend);
  const provider = await loadProvider(init.providerModule);
  const replica = new Replica(provider, init.model, { ...init.build, initialize: false });
  const params = new Float32Array(init.params);
  const buffers = new Float32Array(init.buffers);
  const grads = new Float32Array(init.grads);
  if (params.length !== replica.layout.paramCount || buffers.length !== replica.layout.bufferCount) {
    throw new Error(`worker replica has ${replica.layout.paramCount}+${replica.layout.bufferCount} values, the engine ${params.length}+${buffers.length}`);
  }
  const bound = new BoundReplica(replica, params, buffers);
  const reducer = new ReplicaReduce(init.optimizer, {
    replicaGrads: init.allGrads.map((buffer) => new Float32Array(buffer)),
    reduced: new Float32Array(init.reduced),
    params,
    slots: Object.fromEntries(Object.entries(init.slots).map(([name, buffer]) => [name, new Float32Array(buffer)])),
  });
  port.on('message', async (request: WorkerRequest) => {
    try {
      if (request.type === 'gradients') {
        const results = await bound.gradients(request.version, request.micro, request.scale, request.seed, request.step, grads);
        port.postMessage({ id: request.id, ok: true, results });
      } else if (request.type === 'reduce') {
        port.postMessage({ id: request.id, ok: true, squares: reducer.reduce(request.from, request.to) });
      } else if (request.type === 'update') {
        reducer.update(request.from, request.to, request.lr, request.t, request.coefficient);
        port.postMessage({ id: request.id, ok: true });
      } else if (request.type === 'predict') {
        const logits = await bound.predict(request.version, request.images, request.size, request.chunk);
        port.postMessage({ id: request.id, ok: true, logits }, [logits.buffer as ArrayBuffer]);
      } else {
        port.postMessage({ id: request.id, ok: true, numTensors: tf.memory().numTensors });
      }
    } catch (error) {
      port.postMessage({ id: request.id, ok: false, error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) });
    }
  });
  port.postMessage({ ready: true });
}

main().catch((error: unknown) => {
  parentPort?.postMessage({ ready: false, error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) });
});
