/** The models' seeded generator: reproducible, independent streams, and the right distributions. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SeededRandom } from '../../src/models/random.js';
import { labelSeed } from '../../src/util/index.js';

function moments(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    squares += values[i]! * values[i]!;
  }
  const mean = sum / values.length;
  return { mean, std: Math.sqrt(squares / values.length - mean * mean) };
}

test('the same seed replays the same stream; nearby seeds and labels give different ones', () => {
  const draw = (seed: number) => Array.from({ length: 5 }, ((r) => () => r.nextUint32())(new SeededRandom(seed)));
  assert.equal(draw(1), draw(1));
  assert.not.equal(draw(1), draw(2));
  assert.is.not(labelSeed(0, 'layer1.0.conv1/kernel'), labelSeed(0, 'layer1.0.conv2/kernel'));
  assert.is.not(labelSeed(0, 'a'), labelSeed(1, 'a'));
  assert.is(labelSeed(5, 'fc/kernel'), labelSeed(5, 'fc/kernel'));
});

test('fillNormal: N(0, std²) to within sampling error, and odd lengths keep the stream aligned with nextNormal', () => {
  const values = new SeededRandom(3).fillNormal(new Float32Array(200_001), 0.5);
  const { mean, std } = moments(values);
  assert.ok(Math.abs(mean) < 0.005, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.5) < 0.005, `std ${std}`);
  const within = values.filter((v) => Math.abs(v) < 0.5).length / values.length;
  assert.ok(Math.abs(within - 0.6827) < 0.005, `P(|z| < 1σ) = ${within}`);
  // One value per call from nextNormal equals the bulk fill with std 1.
  const single = new SeededRandom(9);
  const bulk = new SeededRandom(9).fillNormal(new Float32Array(7), 1);
  assert.equal(Float32Array.from({ length: 7 }, () => single.nextNormal()), bulk);
});

test('fillUniform stays in [low, high) with the right mean', () => {
  const values = new SeededRandom(4).fillUniform(new Float32Array(100_000), -0.25, 0.75);
  assert.ok(values.every((v) => v >= -0.25 && v < 0.75));
  assert.ok(Math.abs(moments(values).mean - 0.25) < 0.005);
});

test.run();
