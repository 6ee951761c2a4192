/** The seeded generator of test inputs: uniform [0, 1) (mulberry32), small, fast, the same on every run. */
import type { RandomSource } from '../../src/report/index.js';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The same generator as a RandomSource, for the code that takes one (the bootstrap, the fixtures' models). */
export function randomSource(seed: number): RandomSource {
  return { next: rng(seed) };
}
