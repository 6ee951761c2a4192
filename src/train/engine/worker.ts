/**
 * A data-parallel worker: its own tfjs backend (a separate wasm instance), its own replica built from
 * the provider by name, and views onto the main thread's shared parameter, buffer and gradient
 * memory. It loads parameters when their version changes, so every replica holds the same bits.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendPreference } from '../../backend/index.js';
import type { ModelBuildOptions } from '../../models/index.js';
import { updateRange } from './optimizer.js';
import { loadProvider } from './provider.js';
import { Replica, type MicroBatch } from './replica.js';
import type { OptimizerConfig } from './types.js';

export interface WorkerInit {
  providerModule: string | undefined;
  model: string;
  build: ModelBuildOptions;
  backend: BackendPreference;
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
  const allGrads = init.allGrads.map((buffer) => new Float32Array(buffer));
  const reduced = new Float32Array(init.reduced);
  const slots = Object.fromEntries(Object.entries(init.slots).map(([name, buffer]) => [name, new Float32Array(buffer)]));
  let loadedVersion = -1;
  let buffersCurrent = false;
  const sync = (version: number) => {
    if (version !== loadedVersion) {
      replica.writeParams(params);
      loadedVersion = version;
      buffersCurrent = false;
    }
    if (!buffersCurrent) replica.writeBuffers(buffers);
    buffersCurrent = true;
  };
  port.on('message', (request: WorkerRequest) => {
    try {
      if (request.type === 'gradients') {
        sync(request.version);
        const results = replica.gradients(request.micro, request.scale, request.seed, request.step, buffers.slice(), grads);
        // the replica's buffers now hold its last micro-batch's update, not the engine's combination
        buffersCurrent = false;
        port.postMessage({ id: request.id, ok: true, results });
      } else if (request.type === 'reduce') {
        // this worker's share of the gradient sum, added in worker order as the main thread would
        let squares = 0;
        for (let i = request.from; i < request.to; i++) {
          let g = allGrads[0]![i]!;
          for (let w = 1; w < allGrads.length; w++) g += allGrads[w]![i]!;
          reduced[i] = g;
          squares += Math.fround(g) * Math.fround(g);
        }
        port.postMessage({ id: request.id, ok: true, squares });
      } else if (request.type === 'update') {
        if (request.coefficient < 1) for (let i = request.from; i < request.to; i++) reduced[i] = reduced[i]! * request.coefficient;
        updateRange(init.optimizer, slots, params, reduced, request.lr, request.t, request.from, request.to);
        port.postMessage({ id: request.id, ok: true });
      } else if (request.type === 'predict') {
        sync(request.version);
        const logits = replica.predict(request.images, request.size, request.chunk);
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
