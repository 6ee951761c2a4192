/**
 * Image fingerprints for de-duplication.
 *
 * - The content hash is SHA-256 of the decoded 8-bit RGB pixels and their dimensions, so one image
 *   saved as PNG, as a copy, or as lossless WebP is one image, whatever the file bytes.
 * - The perceptual hash is a 256-bit difference hash (dHash, after Neal Krawetz): the image in gray,
 *   area-averaged to 17×16, one bit per horizontal neighbour pair (is the left one brighter?). It
 *   survives re-encoding, resizing and mild exposure changes, so near duplicates (a downscaled lossy
 *   copy of a film) land within a few bits. 256 bits rather than the usual 64 because knee films all
 *   share one layout: 64-bit hashes of different knees collide too often.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { RgbImage } from './image.js';

export function contentHash(image: RgbImage): string {
  const hash = createHash('sha256');
  hash.update(`${image.width}x${image.height}x3:`);
  hash.update(image.data);
  return hash.digest('hex');
}

const hashColumns = 16;
const hashRows = 16;
export const perceptualHashBits = hashColumns * hashRows;

/** 256-bit dHash as 64 hex characters. */
export async function perceptualHash(image: RgbImage): Promise<string> {
  const gray = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .greyscale()
    .resize(hashColumns + 1, hashRows, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer();
  const bits = new Uint8Array(perceptualHashBits / 8);
  for (let y = 0; y < hashRows; y++) {
    for (let x = 0; x < hashColumns; x++) {
      const bit = y * hashColumns + x;
      if (gray[y * (hashColumns + 1) + x]! > gray[y * (hashColumns + 1) + x + 1]!) bits[bit >> 3]! |= 1 << (bit & 7);
    }
  }
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
