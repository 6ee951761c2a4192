import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { centerCropBox, resizedShape, roundHalfEven } from '../../src/data/image.js';

test("center-crop offsets are torchvision's: Python round, halves to even", () => {
  // torchvision: int(round((73 - 64) / 2.0)) == 4 and int(round((75 - 64) / 2.0)) == 6
  assert.equal(centerCropBox(73, 75, 64), { left: 4, top: 6 });
  assert.equal(centerCropBox(256, 341, 224), { left: 16, top: 58 }); // 58.5 → 58
  assert.equal([0.5, 1.5, 2.5, -0.5, 3.2, 3.7].map(roundHalfEven), [0, 2, 2, -0, 3, 4]);
});

test("resize keeps torchvision's arithmetic: shorter side exact, longer truncated", () => {
  assert.equal(resizedShape(400, 300, 256), { width: 341, height: 256 });
  assert.equal(resizedShape(300, 700, 256), { width: 256, height: 597 });
});

test.run();
