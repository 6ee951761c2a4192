import type { RandomSource } from '../../src/report/stats.js';

/** mulberry32: a tiny seeded generator for test fixtures. */
export function seeded(seed: number): RandomSource {
  let a = seed >>> 0;
  return {
    next() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/**
 * Run `setup` once, before the first test, such that an error FAILS the tests. uvu 0.5 swallows an
 * error thrown in `test.before` (the file reports "(0 / N)" and the run still exits 0), but an error
 * in `test.before.each` fails the test it precedes.
 */
export function setupOnce(test: { before: { each(hook: () => unknown): void } }, setup: () => Promise<void>): void {
  let done: Promise<void> | undefined;
  test.before.each(() => (done ??= setup()));
}
