/**
 * Image fingerprints for de-duplication.
 *
 * - The content hash is SHA-256 of the decoded RGB pixels (readers.ts: bytes, or float levels for a
 *   deep DICOM) and their dimensions, so one image saved as PNG, as a copy, as lossless WebP or as an
 *   8-bit DICOM is one image, whatever the file bytes.
 * - The perceptual hash is a 256-bit DCT hash (pHash, after Zauner 2010): the image in gray, resized
 *   to 32×32, its 2-D DCT-II, and one bit per coefficient of the lowest 16×16 frequencies: is it above
 *   their median? It survives re-encoding, resizing, mild exposure changes and noise, so a downscaled
 *   lossy copy of a film lands within a few bits. 256 bits rather than the classic 64 because knee
 *   films share one layout and 64-bit hashes of different knees collide. (A difference hash was tried
 *   first: on flat, noisy soft tissue its bits flip, and near copies drifted up to 19 bits while
 *   distinct phantom films came as close as 24; with this hash the figures are ≤ 12 and ≥ 34.)
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { displayBytes, type RgbImage } from './image.js';

export function contentHash(image: RgbImage): string {
  const hash = createHash('sha256');
  // Float levels hash under their own tag: bytes keep the hash they always had.
  hash.update(`${image.width}x${image.height}x3${image.data instanceof Float32Array ? 'f32' : ''}:`);
  hash.update(new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength));
  return hash.digest('hex');
}

const side = 32;
const kept = 16;
export const perceptualHashBits = kept * kept;

/** cosines[u * side + x] = cos((2x + 1)uπ / 2·side), the DCT-II basis. */
const cosines = new Float64Array(side * side);
for (let u = 0; u < side; u++) for (let x = 0; x < side; x++) cosines[u * side + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * side));

/** 256-bit pHash as 64 hex characters. */
export async function perceptualHash(image: RgbImage): Promise<string> {
  // The fingerprint of the display image: a deep film and its 8-bit export land on the same bits.
  const bytes = displayBytes(image);
  const gray = await sharp(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .greyscale()
    .resize(side, side, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer();
  // Separable DCT, keeping only the low frequencies: rows first, then columns.
  const rows = new Float64Array(side * kept);
  for (let y = 0; y < side; y++) {
    for (let u = 0; u < kept; u++) {
      let sum = 0;
      for (let x = 0; x < side; x++) sum += gray[y * side + x]! * cosines[u * side + x]!;
      rows[y * kept + u] = sum;
    }
  }
  const coefficients = new Float64Array(kept * kept);
  for (let v = 0; v < kept; v++) {
    for (let u = 0; u < kept; u++) {
      let sum = 0;
      for (let y = 0; y < side; y++) sum += rows[y * kept + u]! * cosines[v * side + y]!;
      coefficients[v * kept + u] = sum;
    }
  }
  // The median leaves out the DC term, which only says how bright the image is overall.
  const sorted = Float64Array.from(coefficients.subarray(1)).sort();
  const median = sorted[sorted.length >> 1]!;
  const bits = new Uint8Array(perceptualHashBits / 8);
  for (let i = 0; i < perceptualHashBits; i++) if (coefficients[i]! > median) bits[i >> 3]! |= 1 << (i & 7);
  return Buffer.from(bits).toString('hex');
}

/** Decode a hex hash into 32-bit words for fast Hamming distances. */
export function hashWords(hex: string): Uint32Array {
  const bytes = Buffer.from(hex, 'hex');
  const words = new Uint32Array(Math.ceil(bytes.length / 4));
  for (let i = 0; i < bytes.length; i++) words[i >> 2]! |= bytes[i]! << ((i & 3) * 8);
  return words;
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

export function hammingDistance(a: Uint32Array, b: Uint32Array): number {
  let distance = 0;
  for (let i = 0; i < a.length; i++) distance += popcount32((a[i]! ^ b[i]!) >>> 0);
  return distance;
}
