/**
 * A LayersModel saved to and loaded from a directory: `model.json` + `group1-shardNofM.bin`, the
 * layout tf.loadLayersModel reads over HTTP in a browser.
 *
 * Why hand-written: tfjs's `file://` handlers live in @tensorflow/tfjs-node, an optional dependency
 * that is absent wherever libtensorflow could not be downloaded. tfjs-core's withSaveHandler and
 * fromMemory do the (de)serialization; this file only moves bytes to and from disk.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { DataError, writeFileAtomic } from '../util/index.js';

/** tfjs-converter's default shard size: small enough for browser caches and HTTP/1 parallelism. */
export const shardBytes = 4 * 1024 * 1024;

export interface SavedTfjsModel {
  dir: string;
  files: string[];
  bytes: number;
}

/** Save `model` into `dir` (created if needed); `convertedBy` goes into model.json's provenance. */
export async function saveLayersModelToDir(model: tfl.LayersModel, dir: string, convertedBy: string): Promise<SavedTfjsModel> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
    }),
  );
  if (!artifacts?.weightSpecs || artifacts.weightData === undefined) throw new Error('tfjs produced no weights for the model');
  const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
  const shardCount = Math.max(1, Math.ceil(weights.byteLength / shardBytes));
  const shardNames = Array.from({ length: shardCount }, (_, i) => `group1-shard${i + 1}of${shardCount}.bin`);
  const modelJson: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tfl.version_layers}`,
    convertedBy,
    weightsManifest: [{ paths: shardNames, weights: artifacts.weightSpecs }],
  };
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < shardCount; i++) {
    await writeFileAtomic(join(dir, shardNames[i]!), weights.subarray(i * shardBytes, Math.min(weights.byteLength, (i + 1) * shardBytes)));
  }
  // model.json last: a directory with a model.json is a complete model.
  await writeFileAtomic(join(dir, 'model.json'), JSON.stringify(modelJson));
  return { dir, files: ['model.json', ...shardNames], bytes: weights.byteLength };
}

/** An IOHandler that reads `dir/model.json` and its weight shards: `tfl.loadLayersModel(directoryLoadHandler(dir))`. */
export function directoryLoadHandler(dir: string): tf.io.IOHandler {
  return {
    async load(): Promise<tf.io.ModelArtifacts> {
      const jsonFile = join(dir, 'model.json');
      let modelJson: tf.io.ModelJSON;
      try {
        modelJson = JSON.parse(await readFile(jsonFile, 'utf8')) as tf.io.ModelJSON;
      } catch (error) {
        throw new DataError(jsonFile, `not a readable tfjs model.json: ${(error as Error).message}`);
      }
      if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) throw new DataError(jsonFile, 'no modelTopology or weightsManifest');
      const buffers: ArrayBuffer[] = [];
      const weightSpecs: tf.io.WeightsManifestEntry[] = [];
      for (const group of modelJson.weightsManifest) {
        for (const path of group.paths) {
          const bytes = await readFile(join(dir, path)).catch((error: Error) => {
            throw new DataError(join(dir, path), `weight shard missing: ${error.message}`);
          });
          buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
        }
        weightSpecs.push(...group.weights);
      }
      return {
        modelTopology: modelJson.modelTopology,
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
        weightSpecs,
        weightData: tf.io.CompositeArrayBuffer.join(buffers),
      };
    },
  };
}

export async function loadLayersModelFromDir(dir: string): Promise<tfl.LayersModel> {
  return tfl.loadLayersModel(directoryLoadHandler(dir));
}
