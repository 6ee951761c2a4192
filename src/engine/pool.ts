/** The main thread's side of the worker threads: start, request/response, shutdown. */
import { Worker } from 'node:worker_threads';
import type { MicroBatch, MicroResult } from './replica.js';
import type { WorkerInit, WorkerRequest } from './worker.js';

const fromSource = import.meta.url.endsWith('.ts');
const workerUrl = new URL(`./worker${fromSource ? '.ts' : '.js'}`, import.meta.url);

/**
 * From dist/ the worker is plain JavaScript. From the TypeScript sources (tests, `tsx`), a worker does
 * not inherit the parent's `--import tsx` loader hooks, so it registers tsx itself before importing.
 */
function startWorker(init: WorkerInit): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData: init });
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
  return new Worker(code, { eval: true, workerData: init });
}

type Pending = { resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void };
type Request = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class WorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;
  readonly ready: Promise<void>;

  constructor(init: WorkerInit) {
    this.worker = startWorker(init);
    this.ready = new Promise((resolve, reject) => {
      const onMessage = (message: { ready?: boolean; error?: string }) => {
        if (message.ready === undefined) return;
        this.worker.off('message', onMessage);
        if (message.ready) resolve();
        else reject(new Error(`engine worker failed to start: ${message.error}`));
      };
      this.worker.on('message', onMessage);
      this.worker.once('error', reject);
    });
    this.worker.on('message', (message: { id?: number; ok?: boolean; error?: string }) => {
      if (message.id === undefined) return;
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      if (message.ok) pending.resolve(message as Record<string, unknown>);
      else pending.reject(new Error(`engine worker: ${message.error}`));
    });
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`engine worker exited with code ${code}`)));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }

  private request(message: Request, transfer: ArrayBuffer[] = []): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  async gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number): Promise<MicroResult[]> {
    const reply = await this.request({ type: 'gradients', version, micro, scale, seed, step });
    return reply['results'] as MicroResult[];
  }

  async predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    const reply = await this.request({ type: 'predict', version, images, size, chunk });
    return reply['logits'] as Float32Array;
  }

  async reduce(from: number, to: number): Promise<number> {
    const reply = await this.request({ type: 'reduce', from, to });
    return reply['squares'] as number;
  }

  async update(from: number, to: number, lr: number, t: number, coefficient: number): Promise<void> {
    await this.request({ type: 'update', from, to, lr, t, coefficient });
  }

  async numTensors(): Promise<number> {
    const reply = await this.request({ type: 'numTensors' });
    return reply['numTensors'] as number;
  }

  async terminate(): Promise<void> {
    this.failure ??= new Error('engine disposed');
    await this.worker.terminate();
  }
}

/**
 * One worker thread per init, started one after another (each waits until the one before is ready:
 * every start compiles a backend instance and builds a model); all or none.
 */
export async function startClients(inits: WorkerInit[]): Promise<WorkerClient[]> {
  const clients: WorkerClient[] = [];
  try {
    for (const init of inits) {
      const client = new WorkerClient(init);
      clients.push(client);
      await client.ready;
    }
  } catch (error) {
    await Promise.all(clients.map((c) => c.terminate()));
    throw error;
  }
  return clients;
}
