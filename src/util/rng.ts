/**
 * The project's seeded random numbers.
 *
 * sfc32 (Chris Doty-Humphrey's "small fast chaotic" generator, from PractRand) is written here rather
 * than taken from npm: it is twenty lines, passes PractRand/BigCrush, and its whole state is four
 * 32-bit words, so a checkpoint can save it as plain JSON and resume the exact stream. (The only
 * well-kept npm candidate, `seedrandom`, hides its state behind a per-algorithm option and keeps
 * float state in some generators.) Seeds are spread with splitmix32 so nearby seeds (0, 1, 2, …)
 * give unrelated streams.
 */
import { UserError } from './errors.js';

export interface RngState {
  algorithm: 'sfc32';
  words: [number, number, number, number];
}

export interface Rng {
  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number;
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
  /** A JSON-safe snapshot; `restoreRng(state)` continues the stream from here. */
  state(): RngState;
}

/** splitmix32: a seed scrambler whose successive outputs are well mixed even for seeds 0, 1, 2… */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    return fmix32(s);
  };
}

function sfc32(words: [number, number, number, number]): Rng {
  let [a, b, c, d] = words;
  const nextUint32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  return {
    nextUint32,
    next: () => nextUint32() / 4294967296,
    state: () => ({ algorithm: 'sfc32', words: [a >>> 0, b >>> 0, c >>> 0, d >>> 0] }),
  };
}

/** A generator for `seed` (any finite number; it is reduced to 32 bits, fractions included). */
export function createRng(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new UserError(`a seed must be a finite number, got ${seed}`);
  const low = seed >>> 0;
  const high = Math.floor(seed / 4294967296) >>> 0;
  const mix = splitmix32(low ^ Math.imul(high, 0x27d4eb2d));
  const rng = sfc32([mix(), mix(), mix(), 1]);
  for (let i = 0; i < 12; i++) rng.nextUint32(); // sfc32's author recommends discarding the first outputs
  return rng;
}

/** Continue a stream saved with `rng.state()`. */
export function restoreRng(state: unknown): Rng {
  const s = state as Partial<RngState> | null;
  const words = s?.words;
  const valid =
    s !== null &&
    typeof s === 'object' &&
    s.algorithm === 'sfc32' &&
    Array.isArray(words) &&
    words.length === 4 &&
    words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff);
  if (!valid) throw new UserError(`not a saved random-number state: ${JSON.stringify(state)}`);
  return sfc32([...(words as [number, number, number, number])]);
}

/** murmur3's 32-bit finalizer: every input bit affects every output bit. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** splitmix32's step: the golden-ratio increment, then the finalizer (nearby seeds give unrelated streams). */
export function mix32(value: number): number {
  return fmix32((value + 0x9e3779b9) | 0);
}

/**
 * A 32-bit seed derived from a base seed and integers (epoch, sample index…). Used so each sample's
 * augmentation depends only on (seed, epoch, position), never on the order batches were prepared in.
 */
export function deriveSeed(seed: number, ...parts: number[]): number {
  let h = fmix32((seed >>> 0) ^ 0x2545f491);
  h = fmix32(h ^ (Math.floor(seed / 4294967296) >>> 0));
  for (const part of parts) {
    h = fmix32((Math.imul(h, 0x9e3779b1) + (part >>> 0)) >>> 0);
    h = fmix32(h ^ (Math.floor(part / 4294967296) >>> 0));
  }
  return h;
}

/**
 * A stream seed for one named consumer of a model seed (a layer's dropout masks, one weight's initial
 * values): FNV-1a of the name, mixed. Names rather than positions, so adding a layer to an
 * architecture leaves every other layer's draws as they were.
 */
export function labelSeed(seed: number, label: string): number {
  let hash = 0x811c9dc5 ^ mix32(seed >>> 0);
  for (let i = 0; i < label.length; i++) {
    hash ^= label.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return mix32(hash >>> 0);
}

/** Uniform in [low, high). */
export function uniform(rng: Rng, low: number, high: number): number {
  return low + (high - low) * rng.next();
}

/** Uniform integer in [0, n). */
export function randomInt(rng: Rng, n: number): number {
  return Math.floor(rng.next() * n);
}

/** Standard normal (Box–Muller; no cached second value, so the state stays four words). */
export function normal(rng: Rng): number {
  const u = 1 - rng.next(); // (0, 1]: log(0) would be -Infinity
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Gamma(shape, 1) by Marsaglia & Tsang (2000), with the shape < 1 boost. */
export function gamma(rng: Rng, shape: number): number {
  if (shape < 1) return gamma(rng, shape + 1) * Math.pow(1 - rng.next(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.next();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Beta(alpha, beta) from two gammas (mixup's λ). */
export function beta(rng: Rng, alpha: number, betaParam: number): number {
  const x = gamma(rng, alpha);
  const y = gamma(rng, betaParam);
  return x / (x + y);
}

/** Fisher–Yates, in place. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
