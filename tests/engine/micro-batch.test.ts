/**
 * The micro-batch cap: the backend's activation budget over what one image's pass holds, and a GPU's
 * limit on a single tensor over the largest layer output of one image — checked by hand.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { microBatchLimit } from '../../src/engine/engine.js';

// ResNet18 at 224²: conv1's output is the largest layer output, 112·112·64 floats per image
const resnet18 = { activationFloatsPerImage: () => 6_000_000, largestActivationFloatsPerImage: () => 112 * 112 * 64 };

test('no bound known: no cap', () => {
  assert.is(microBatchLimit(resnet18, undefined), undefined);
});

test('the activation budget caps the images per pass (wasm: 3 GiB at 18 bytes per float → 29)', () => {
  assert.is(microBatchLimit(resnet18, { budgetBytes: 3 * 1024 ** 3, bytesPerActivationFloat: 18 }), Math.floor((3 * 1024 ** 3) / (6_000_000 * 18)));
  assert.is(microBatchLimit(resnet18, { budgetBytes: 3 * 1024 ** 3, bytesPerActivationFloat: 18 }), 29);
});

test("a GPU's storage-binding limit caps one tensor: 128 MiB over conv1's 3.06 MiB per image → 41, below a budget that allows 120", () => {
  const memory = { budgetBytes: 120 * 6_000_000 * 24, bytesPerActivationFloat: 24, maxTensorBytes: 128 * 1024 ** 2 };
  assert.is(microBatchLimit(resnet18, memory), Math.floor((128 * 1024 ** 2) / (112 * 112 * 64 * 4)));
  assert.is(microBatchLimit(resnet18, memory), 41);
  assert.is(microBatchLimit(resnet18, { ...memory, maxTensorBytes: undefined }), 120);
});

test('at least one image per pass, however small the bound', () => {
  assert.is(microBatchLimit(resnet18, { budgetBytes: 1, bytesPerActivationFloat: 24, maxTensorBytes: 1 }), 1);
});

test.run();
