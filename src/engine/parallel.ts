/**
 * What the step engine and the inference engine share about spreading work over replicas: how many
 * worker threads a backend allows, how a range of images or parameters is cut into blocks, the
 * memory the replicas share, and how a backend's own failures reach the user.
 */
import { workerThreadBackends, type BackendFaults, type WorkerThreads } from '../backend/index.js';
import { UserError } from '../util/index.js';

/** The worker threads to start for `requested` (default: the backend's own count where it runs in workers, else 1). */
export function workerCount(requested: number | undefined, threads: WorkerThreads): number {
  const workers = requested ?? (threads.trainsInWorkers ? threads.defaultCount() : 1);
  if (workers > 1 && !threads.trainsInWorkers) {
    throw new UserError(`--workers > 1 is for the ${workerThreadBackends()} backends; ${threads.why}`);
  }
  return workers;
}

/** Floats in a SharedArrayBuffer when worker threads read them, else in an ordinary array. */
export function sharedFloats(count: number, shared: boolean): Float32Array {
  return shared ? new Float32Array(new SharedArrayBuffer(count * 4)) : new Float32Array(count);
}

/** Split [0, n) into `parts` contiguous blocks as equal as possible. */
export function blocks(n: number, parts: number): Array<[number, number]> {
  return Array.from({ length: parts }, (_, w) => [Math.floor((w * n) / parts), Math.floor(((w + 1) * n) / parts)] as [number, number]);
}

/** What a pass was doing when the backend failed, for the message. */
export interface PassContext {
  doing: string;
  model: string;
  imageSize: number;
  perPass: number;
}

/**
 * A failure of the backend itself (memory exhausted, a lost GPU device) as a UserError that names
 * the model, the input size and the images per pass, and the fix; any other error as it is.
 */
export function translateFault(faults: BackendFaults | undefined, error: unknown, pass: PassContext): unknown {
  const fault = faults?.describe(error);
  if (!fault) return error;
  const { doing, model, imageSize: size, perPass } = pass;
  return new UserError(
    `${fault} while ${doing} ${model} at ${size}×${size} with ${perPass} image${perPass === 1 ? '' : 's'} per pass (micro-batch); ` +
      `pass a smaller --micro-batch${perPass > 1 ? ` (at most ${Math.max(1, Math.floor(perPass / 2))})` : ''} or a smaller --image-size, and start again (checkpoints already written are kept)`,
  );
}

/** A fault the backend reported on its own during the last passes (a GPU reports errors asynchronously), thrown as translateFault words it. */
export function throwPendingFault(faults: BackendFaults | undefined, pass: PassContext): void {
  const pending = faults?.takePending?.();
  if (pending) throw translateFault(faults, pending, pass);
}
