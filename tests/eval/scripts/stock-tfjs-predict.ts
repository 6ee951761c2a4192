/**
 * Loads an exported tfjs model with stock tfjs only (cpu backend, no osteo model code) and prints
 * its softmax probabilities for one raw float32 NHWC input: argv = MODEL_DIR INPUT_FILE SIZE.
 */
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadLayersModelFromDir } from '../../../src/eval/tfjs-io.js';

const [dir, inputFile, size] = process.argv.slice(2) as [string, string, string];
await tf.setBackend('cpu');
const model = await loadLayersModelFromDir(dir);
const bytes = await readFile(inputFile);
const input = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const s = Number(size);
const probabilities = tf.tidy(() => tf.softmax(model.predict(tf.tensor4d(input, [1, s, s, 3])) as tf.Tensor).dataSync());
process.stdout.write(JSON.stringify(Array.from(probabilities)));
