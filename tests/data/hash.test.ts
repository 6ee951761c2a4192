import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { contentHash, hammingDistance, hashWords, perceptualHash } from '../../src/data/hash.js';
import { createRng } from '../../src/util/index.js';
import { testWith } from '../helpers/requirements.js';
import { numpy, runPython } from '../fixtures/torch/python.js';

/** A 32×32 gray image (as RGB), so sharp's resize to 32×32 leaves the pixels as they are. */
function grayImage(seed: number) {
  const rng = createRng(seed);
  const gray = Array.from({ length: 32 * 32 }, (_, i) => Math.round(128 + 60 * Math.sin(i / 37) + 40 * (rng.next() - 0.5)));
  const data = new Uint8Array(32 * 32 * 3);
  gray.forEach((v, i) => data.fill(v, i * 3, i * 3 + 3));
  return { gray, image: { data, width: 32, height: 32 } };
}

testWith(numpy, test, 'perceptual hash: the DCT bits match a numpy reference', async () => {
  const { gray, image } = grayImage(3);
  const script = String.raw`
import json, sys
import numpy as np
g = np.array(json.load(sys.stdin), dtype=np.float64).reshape(32, 32)
n = np.arange(32)
basis = np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 64)   # basis[u, x]
coefficients = (basis @ g @ basis.T)[:16, :16]                    # [v, u] = sum_y sum_x g[y,x] cos_u(x) cos_v(y)
flat = coefficients.reshape(-1)
median = np.sort(flat[1:])[len(flat[1:]) // 2]
bits = (flat > median).astype(np.uint8)
print(bytes(np.packbits(bits, bitorder="little")).hex())
`;
  const reference = runPython({ code: script }, [], { input: JSON.stringify(gray), needs: numpy }).trim();
  assert.is(await perceptualHash(image), reference);
});

test('content hash depends on pixels and shape; Hamming distance counts differing bits', () => {
  const { image } = grayImage(1);
  const same = { ...image, data: image.data.slice() };
  assert.is(contentHash(image), contentHash(same));
  same.data[7] ^= 1;
  assert.is.not(contentHash(image), contentHash(same));
  assert.is.not(contentHash({ data: image.data, width: 16, height: 64 }), contentHash(image));
  assert.is(hammingDistance(hashWords('ff00'), hashWords('0f01')), 5);
  assert.is(hammingDistance(hashWords('ffffffffffffffff'), hashWords('0000000000000000')), 64);
});

test.run();
