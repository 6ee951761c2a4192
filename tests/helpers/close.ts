/** The one closeness check of backend comparisons: max |actual − expected| within `tolerance` of the expected values' scale (at least 1). */
import * as assert from 'uvu/assert';

export interface Shaped {
  values: ArrayLike<number>;
  shape: number[];
}

export function assertClose(actual: ArrayLike<number> | Shaped, expected: ArrayLike<number> | Shaped, label: string, tolerance = 1e-4): void {
  const shaped = (x: ArrayLike<number> | Shaped): x is Shaped => 'shape' in x && 'values' in x;
  if (shaped(actual) && shaped(expected)) assert.equal(actual.shape, expected.shape, `${label}: shape`);
  const a = shaped(actual) ? actual.values : actual;
  const e = shaped(expected) ? expected.values : expected;
  assert.is(a.length, e.length, `${label}: length`);
  let scale = 1;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]!));
  let worst = 0;
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
  assert.ok(worst <= tolerance * scale, `${label}: max |difference| = ${worst} (relative ${(worst / scale).toExponential(2)} > ${tolerance}, scale ${scale})`);
}
