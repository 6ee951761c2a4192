/**
 * What the image readers hand on, and the words for why a file yields no pixels: the pixels and facts
 * of a decoded file, the read options (the pixel guard, the DICOM window) and a reader's refusal. It
 * imports nothing, so the DICOM pipeline (dicom.ts) can be bundled into the web viewer's page as it
 * is; readers.ts re-exports all of it.
 */

/**
 * Decoded RGB pixels, row-major HWC, in 8-bit units: bytes for 8-bit sources, floats on the same
 * 0–255 scale for deeper ones (see the header).
 */
export interface RgbImage {
  data: Uint8Array | Float32Array;
  width: number;
  height: number;
}

/** What a reader learned about a file, for the index and for messages. */
export interface ImageFacts {
  /** The reader's name (the content's format, whatever the file is called). */
  format: string;
  /** As displayed: EXIF orientation applied. */
  width: number;
  height: number;
  /** Channels stored in the file (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA or CMYK). */
  channels: number;
  /** Bits per stored sample (8 or 16). */
  bitDepth: number;
  /** Frames or pages in the file; the first is the one decoded. */
  frames: number;
  /**
   * DICOM only: the keywords of the patient-identifying attributes the file carries (PatientName,
   * PatientID, …), never their values, so a user knows which files not to share.
   */
  identifyingTags?: string[];
}

export interface DecodedImage {
  pixels: RgbImage;
  facts: ImageFacts;
}

export interface ReadOptions {
  /** Refuse images with more pixels than this (default maxInputPixels). */
  maxPixels?: number;
  /** How a DICOM file's values become gray levels (default `auto`; see dicom.ts). */
  dicomWindow?: DicomWindow;
}

/**
 * The VOI step of a DICOM file: `auto` takes the file's first window or VOI LUT and, where it has
 * none, the min/max of the modality values; `file` takes the file's window or VOI LUT and, where it
 * has none, the whole range its stored bits can hold; a centre and width override both.
 */
export type DicomWindow = 'auto' | 'file' | { center: number; width: number };

/** `auto`, `file` or `C,W` (a centre and a width ≥ 1) as a DicomWindow; undefined when the text is none of these. */
export function parseDicomWindow(text: string): DicomWindow | undefined {
  if (text === 'auto' || text === 'file') return text;
  const match = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*$/.exec(text);
  if (match === null) return undefined;
  const [center, width] = [Number(match[1]), Number(match[2])];
  return width >= 1 ? { center, width } : undefined;
}

/** A window's text form, as a run's config.json and the index record it: `auto`, `file` or `C,W` (parseDicomWindow reads it back). */
export function dicomWindowText(window: DicomWindow): string {
  return typeof window === 'string' ? window : `${window.center},${window.width}`;
}

/** Images above this many pixels are refused (a decompression-bomb guard; the largest real film is ~7 Mpx). */
export const maxInputPixels = 64_000_000;

/**
 * Images whose longer side is more than this many times the shorter are refused: a knee film is
 * within 3:1, and the eval transform (shorter side to the model's resize) would make a 60000×2 strip
 * 7,680,000 pixels long, billions of pixels, while the centre crop saw a sliver of it.
 */
export const maxAspectRatio = 10;

/** Why a file yields no pixels; the index reports these names. */
export type UnreadableReason =
  | 'zero-byte'
  | 'not-an-image'
  | 'unsupported-format'
  | 'too-large'
  | 'truncated'
  | 'unreadable'
  | 'dicom-unsupported-syntax'
  | 'dicom-no-pixels'
  | 'dicom-multiframe'
  | 'extreme-aspect-ratio';

/** A reader's refusal, before the seam names the file. */
export class ImageFault extends Error {
  constructor(
    readonly kind: UnreadableReason,
    message: string,
    readonly facts?: ImageFacts,
  ) {
    super(message);
  }
}

