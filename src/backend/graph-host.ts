/**
 * The tfjs backend that holds a model while its ONNX graph is emitted. An engine on onnxruntime builds
 * the tfjs model only to walk its layers (src/models/onnx/) and drops it right after, so any active
 * tfjs backend will do; where none is active yet (a command that chose an onnxruntime provider), the
 * pure-JavaScript cpu backend is taken: it needs no native library and allocates nothing up front.
 */
import * as tf from '@tensorflow/tfjs-core';

export async function ensureGraphHost(): Promise<void> {
  if (tf.engine().backendName) return;
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error('the tfjs cpu backend did not initialise');
}
