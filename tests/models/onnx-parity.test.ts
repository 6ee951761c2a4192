/**
 * Every registered model's ONNX graph against PyTorch and against the tfjs path (sweeps the registry):
 *  - torchvision → ONNX: the .pth that PyTorch writes (tests/fixtures/torch/reference.py: random
 *    weights, calibrated BatchNorm statistics) is loaded strictly, emitted as ONNX, run on
 *    onnxruntime's CPU provider, and must give PyTorch's eval-mode logits (max abs diff ≤ 1e-4, relative
 *    beyond |logit| 1, as parity.test.ts bounds the tfjs path) at 64, 65 (odd sizes: torch's symmetric
 *    padding at every stride-2 layer) and 224 px; at 64 and 65 px also the tfjs model's own logits.
 *  - onnx.checker (Debian's python3-onnx) accepts every model's graph, with full shape inference.
 * Set OSTEO_PARITY_REPORT=1 to print the measured differences.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { createOnnxSession, useBackend } from '../../src/backend/index.js';
import { listModels } from '../../src/models/index.js';
import { buildWithWeights, modelToOnnx, readPth } from '../../src/weights/index.js';
import { testWith } from '../helpers/requirements.js';
import { onnxPython, referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';
import { paritySizes, torchvisionFiles } from '../fixtures/torch/torchvision-files.js';

const tolerance = 1e-4;
const sizes = paritySizes;
/** The sizes where the tfjs model runs too (at 224 px parity.test.ts already ties tfjs to PyTorch). */
const tfjsSizes = new Set([64, 65]);
const report = process.env['OSTEO_PARITY_REPORT'] === '1';
const models = listModels();
const dir = temporaryDirectory('onnx-parity');
const measured: string[] = [];

function readF32(path: string): Float32Array {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function maxAbsDiff(a: Float32Array, b: ArrayLike<number>): number {
  assert.is(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

test.before.each(async () => {
  await useBackend('wasm');
});

test.after(() => {
  if (process.env['OSTEO_KEEP_FIXTURES'] === '1') process.stderr.write(`fixtures kept in ${dir.path}\n`);
  else dir.remove();
  if (report) process.stderr.write(`\n${measured.join('\n')}\n`);
});

for (const entry of models) {
  referenceTest(test, `${entry.name}: the ONNX graph of a torchvision-written .pth gives PyTorch's logits on onnxruntime (cpu), and the tfjs model's`, async () => {
    const files = torchvisionFiles();
    const dict = await readPth(join(files, `${entry.name}.pth`));
    for (const size of sizes) {
      const { model } = buildWithWeights(entry, dict, { imageSize: size });
      try {
        const { bytes } = await modelToOnnx(model, entry.name);
        const nchw = readF32(join(files, `${entry.name}_input_${size}.bin`));
        const expected = readF32(join(files, `${entry.name}_logits_${size}.bin`));
        const batch = nchw.length / (3 * size * size);
        const session = await createOnnxSession(bytes, { label: { model: entry.name, imageSize: size }, threads: 1 });
        let ours: Float32Array;
        try {
          ours = await session.run(nchw, [batch, 3, size, size]);
        } finally {
          await session.release();
        }
        const bound = tolerance * Math.max(1, ...Array.from(expected, Math.abs));
        const diff = maxAbsDiff(ours, expected);
        const line = [`${entry.name} ONNX ${size}px: max |Δlogit| vs PyTorch ${diff.toExponential(2)}`];
        assert.ok(diff <= bound, `${entry.name} at ${size}px: ONNX vs PyTorch max abs diff ${diff} > ${bound}`);
        if (tfjsSizes.has(size)) {
          const tfjs = tf.tidy(() => (model.predict(tf.transpose(tf.tensor4d(nchw, [batch, 3, size, size]), [0, 2, 3, 1])) as tf.Tensor).dataSync());
          const againstTfjs = maxAbsDiff(ours, tfjs);
          line.push(`vs tfjs ${againstTfjs.toExponential(2)}`);
          assert.ok(againstTfjs <= bound, `${entry.name} at ${size}px: ONNX vs tfjs max abs diff ${againstTfjs} > ${bound}`);
        }
        measured.push(line.join(', '));
      } finally {
        model.dispose();
      }
    }
  });
}

testWith(onnxPython, test, "every registered model's ONNX graph passes onnx.checker (full check, with shape inference)", async () => {
  const paths: string[] = [];
  for (const [index, entry] of models.entries()) {
    const model = entry.build({ imageSize: 65, seed: 40 + index });
    try {
      const path = join(dir.path, `${entry.name}_checked.onnx`);
      writeFileSync(path, (await modelToOnnx(model, entry.name)).bytes);
      paths.push(path);
    } finally {
      model.dispose();
    }
  }
  const code = [
    'import json, sys, onnx',
    'out = {}',
    'for path in sys.argv[1:]:',
    '    model = onnx.load(path)',
    '    onnx.checker.check_model(model, full_check=True)',
    '    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)',
    '    dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]',
    '    out[path] = {"opset": model.opset_import[0].version, "output": dims}',
    'print(json.dumps(out))',
  ].join('\n');
  const result = JSON.parse(runPython({ code }, paths, { needs: onnxPython })) as Record<string, { opset: number; output: (string | number)[] }>;
  for (const path of paths) {
    assert.ok(result[path]!.opset >= 17, `${path}: opset ${result[path]!.opset}`);
    assert.equal(result[path]!.output, ['batch', 3], `${path}: the inferred output shape`);
  }
});

test.run();
