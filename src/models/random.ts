/**
 * The models' own seeded randomness: weight initialisation, dropout masks and stochastic-depth masks.
 * Every draw comes from an explicit generator built from a seed, never from Math.random, so a model
 * built (and trained) twice with the same seed makes the same draws.
 */
import { mix32 } from '../util/index.js';

/** xoshiro128**: small, fast, and good enough for masks and initial weights; 128 bits of state. */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => (x = mix32(x));
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal (Marsaglia's polar method; the second value of each pair is kept for the next call). */
  nextNormal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    const [a, b] = this.normalPair();
    this.spareNormal = b;
    return a;
  }

  /** Fills `out` with N(0, std²) draws: the bulk path of weight initialisation (no per-value call overhead). */
  fillNormal(out: Float32Array, std: number): Float32Array {
    let i = 0;
    if (this.spareNormal !== null && out.length > 0) {
      out[i++] = this.spareNormal * std;
      this.spareNormal = null;
    }
    for (; i < out.length; i += 2) {
      // Polar method inline: ~2× faster than Box–Muller here (no sine/cosine), which matters for 10^7 weights.
      let u: number;
      let v: number;
      let s: number;
      do {
        u = 2 * this.next() - 1;
        v = 2 * this.next() - 1;
        s = u * u + v * v;
      } while (s >= 1 || s === 0);
      const scale = Math.sqrt((-2 * Math.log(s)) / s);
      out[i] = u * scale * std;
      if (i + 1 < out.length) out[i + 1] = v * scale * std;
      else this.spareNormal = v * scale;
    }
    return out;
  }

  /** Fills `out` with U(low, high) draws. */
  fillUniform(out: Float32Array, low: number, high: number): Float32Array {
    const width = high - low;
    for (let i = 0; i < out.length; i++) out[i] = low + this.next() * width;
    return out;
  }

  private normalPair(): [number, number] {
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.next() - 1;
      v = 2 * this.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const scale = Math.sqrt((-2 * Math.log(s)) / s);
    return [u * scale, v * scale];
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
