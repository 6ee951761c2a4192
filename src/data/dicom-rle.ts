/**
 * DICOM RLE Lossless (PS3.5 Annex G), written here because no maintained npm package decodes it on
 * its own (the codec packages cover the JPEG family; dcmjs-codecs bundles a C++ toolkit for it). The
 * format is small: a 64-byte header of segment offsets, one PackBits-coded segment per byte plane
 * (for each sample, the most significant byte first), each segment rows × columns bytes long.
 */
import type { FrameLayout } from './dicom-codecs.js';

function readUint32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/** One PackBits segment into `out` (exactly out.length bytes, or an error). */
function unpackSegment(bytes: Uint8Array, start: number, end: number, out: Uint8Array, segment: number): void {
  let at = start;
  let o = 0;
  while (o < out.length) {
    if (at >= end) throw new Error(`RLE segment ${segment + 1} ends after ${o} of ${out.length} bytes`);
    const control = (bytes[at++]! << 24) >> 24; // a signed byte
    if (control >= 0) {
      const run = control + 1;
      if (at + run > end || o + run > out.length) throw new Error(`RLE segment ${segment + 1} overruns (a literal run of ${run})`);
      out.set(bytes.subarray(at, at + run), o);
      at += run;
      o += run;
    } else if (control !== -128) {
      const run = 1 - control;
      if (at >= end || o + run > out.length) throw new Error(`RLE segment ${segment + 1} overruns (a repeat of ${run})`);
      out.fill(bytes[at++]!, o, o + run);
      o += run;
    }
  }
}

/** An RLE frame to interleaved unsigned samples (bytes for 8-bit, words for 16-bit). */
export function decodeRle(frame: Uint8Array, layout: FrameLayout): Uint8Array | Uint16Array {
  const bytesPerSample = layout.bitsAllocated / 8;
  if (bytesPerSample !== 1 && bytesPerSample !== 2) throw new Error(`RLE with ${layout.bitsAllocated}-bit samples is not decoded (8 or 16)`);
  if (frame.length < 64) throw new Error(`RLE frame is ${frame.length} bytes, shorter than its 64-byte header`);
  const segments = readUint32(frame, 0);
  const expected = layout.samplesPerPixel * bytesPerSample;
  if (segments !== expected) throw new Error(`RLE frame has ${segments} segments, ${layout.samplesPerPixel} samples of ${layout.bitsAllocated} bits need ${expected}`);
  const pixels = layout.rows * layout.columns;
  const planes: Uint8Array[] = [];
  for (let s = 0; s < segments; s++) {
    const start = readUint32(frame, 4 + 4 * s);
    const end = s + 1 < segments ? readUint32(frame, 8 + 4 * s) : frame.length;
    if (start < 64 || start > end || end > frame.length) throw new Error(`RLE segment ${s + 1} has offsets ${start}–${end} outside the ${frame.length}-byte frame`);
    const plane = new Uint8Array(pixels);
    unpackSegment(frame, start, end, plane, s);
    planes.push(plane);
  }
  const spp = layout.samplesPerPixel;
  if (bytesPerSample === 1) {
    const out = new Uint8Array(pixels * spp);
    for (let c = 0; c < spp; c++) for (let p = 0; p < pixels; p++) out[p * spp + c] = planes[c]![p]!;
    return out;
  }
  const out = new Uint16Array(pixels * spp);
  for (let c = 0; c < spp; c++) {
    const high = planes[2 * c]!;
    const low = planes[2 * c + 1]!;
    for (let p = 0; p < pixels; p++) out[p * spp + c] = (high[p]! << 8) | low[p]!;
  }
  return out;
}
