/**
 * The image-reader seam: the one list of file formats osteo reads, and the one way a file becomes
 * pixels. `data index`, `data preview`, the resize cache, `eval` and `predict` all read through here;
 * nothing else in the project decodes an image file or keeps a list of image extensions.
 *
 * Which files are images: a file whose name has a reader's extension, or whose first bytes match a
 * reader's signature (so an extensionless export is found). Which reader decodes it: the signature,
 * never the name, so a PNG saved as `.jpg` is read as PNG (and the index notes the mismatch). Content
 * that matches no reader is refused with a reason: empty, a known format osteo does not read (named),
 * or no image at all. A decoded image more than `maxAspectRatio` times as long as it is wide is refused
 * too: no film is, and every consumer would enlarge it to billions of pixels.
 *
 * The rule for what is listed: raster formats that sharp's bundled libvips decodes into the pixels of
 * a film — PNG, JPEG, WebP, TIFF, GIF and AVIF. Vector drawings (SVG, PDF) are refused because
 * rasterising them invents a resolution, and formats the bundled libvips cannot decode (BMP, HEIC,
 * bare JPEG 2000) are refused by name rather than as "not an image". DICOM has its own reader
 * (dicom.ts: the modality LUT, the VOI window and MONOCHROME1 in floating point). A new format is one
 * entry in `imageReaders`: its extensions, its signature and its decode.
 *
 * Every image becomes RGB pixels in 8-bit units (0–255), in one of two representations:
 * - `Uint8Array` for the raster formats, exactly as before: EXIF orientation applied, alpha dropped,
 *   grayscale replicated to three channels, CMYK converted, 16-bit scaled to 8 (libvips keeps the high
 *   byte); multi-frame files (animated GIF, multi-page TIFF) give their first frame, and their facts
 *   say how many there are. A DICOM film whose windowed values all land on 8-bit levels takes this
 *   form too, so it is the same image as its lossless PNG export, bit for bit.
 * - `Float32Array` for deeper sources (a windowed 12- or 16-bit DICOM): the same scale, fractional
 *   levels kept. Every consumer divides by 255 as it does for bytes, so the arithmetic after the seam
 *   is one code path, and nothing deeper than 8 bits is rounded to 8 on the way to the model.
 */
import { open, readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { DataError, errorMessage } from '../util/index.js';
import { decodeDicom, isDicom } from './dicom.js';
import { nodeCodecs } from './dicom-codecs-node.js';
import { ImageFault, dicomWindowText, maxAspectRatio, maxInputPixels, type DecodedImage, type DicomWindow, type ImageFacts, type ReadOptions, type RgbImage, type UnreadableReason } from './image-types.js';

export {
  ImageFault,
  dicomWindowText,
  maxAspectRatio,
  maxInputPixels,
  parseDicomWindow,
  type DecodedImage,
  type DicomWindow,
  type ImageFacts,
  type ReadOptions,
  type RgbImage,
  type UnreadableReason,
} from './image-types.js';

/** One entry of the seam. */
export interface ImageReader {
  name: string;
  /** Lower-case, with the dot. */
  extensions: readonly string[];
  /** Does this content (the file's first `sniffBytes` bytes, or fewer for a short file) belong to this reader? */
  sniff(head: Uint8Array): boolean;
  /** The whole file's bytes to pixels and facts; failures throw ImageFault (or anything, classified by readImage). */
  decode(bytes: Buffer, options: Required<ReadOptions>): Promise<DecodedImage>;
}

/** How many leading bytes a signature may look at (DICOM's "DICM" sits at 128). */
export const sniffBytes = 256;

/** A file that yields no pixels: a DataError naming it, with the reason and what was learned before it failed. */
export class UnreadableImageError extends DataError {
  constructor(
    file: string,
    readonly kind: UnreadableReason,
    reason: string,
    readonly facts?: ImageFacts,
  ) {
    super(file, reason);
  }
}

const startsWith = (head: Uint8Array, bytes: readonly number[], at = 0) => head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));

/** ISO base media (AVIF, HEIC): the major and compatible brands of a leading `ftyp` box (none without one). */
function ftypBrands(head: Uint8Array): string[] {
  if (!startsWith(head, ascii('ftyp'), 4)) return [];
  const size = Math.min(((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0, head.length);
  const brands: string[] = [];
  for (let at = 8; at + 4 <= size; at += 4) if (at !== 12) brands.push(String.fromCharCode(...head.subarray(at, at + 4)));
  return brands;
}

/** How libjpeg, libpng/spng, libwebp and libtiff say the data stops early. */
const truncation = /premature end|end of stream|truncat|unexpected end|end of file|not enough data|corrupt/i;

/** A pixel count with thousands separators, so a limit reads at a glance. */
const count = (n: number) => n.toLocaleString('en-US');

/** The readers that go through sharp: header first (the pixel guard needs no decode), then the pixels. */
async function decodeWithSharp(name: string, bytes: Buffer, { maxPixels }: Required<ReadOptions>): Promise<DecodedImage> {
  const metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
  const stored = { width: metadata.width ?? 0, height: metadata.height ?? 0 };
  // Orientations 5–8 turn the picture a quarter: its displayed width is the stored height.
  const quarterTurn = (metadata.orientation ?? 1) >= 5;
  const facts: ImageFacts = {
    format: name,
    width: quarterTurn ? stored.height : stored.width,
    height: quarterTurn ? stored.width : stored.height,
    channels: metadata.channels ?? 0,
    bitDepth: metadata.depth === 'ushort' ? 16 : 8,
    frames: metadata.pages ?? 1,
  };
  const pixels = stored.width * stored.height;
  if (pixels > maxPixels) {
    throw new ImageFault('too-large', `${stored.width}×${stored.height} = ${count(pixels)} pixels, above the limit of ${count(maxPixels)} (a guard against decompression bombs)`, facts);
  }
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .rotate() // apply EXIF orientation
      .toColourspace('srgb') // CMYK, grayscale and 16-bit all land in 8-bit sRGB
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
    return { pixels: { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height }, facts };
  } catch (error) {
    const detail = errorMessage(error);
    throw new ImageFault(truncation.test(detail) ? 'truncated' : 'unreadable', `cannot decode image: ${detail}`, facts);
  }
}

function sharpReader(name: string, extensions: readonly string[], sniff: (head: Uint8Array) => boolean): ImageReader {
  return { name, extensions, sniff, decode: (bytes, options) => decodeWithSharp(name, bytes, options) };
}

/** Every format osteo reads, in the order a file is offered to them. */
export const imageReaders: readonly ImageReader[] = [
  sharpReader('png', ['.png'], (head) => startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  sharpReader('jpeg', ['.jpg', '.jpeg'], (head) => startsWith(head, [0xff, 0xd8, 0xff])),
  sharpReader('webp', ['.webp'], (head) => startsWith(head, ascii('RIFF')) && startsWith(head, ascii('WEBP'), 8)),
  sharpReader('tiff', ['.tif', '.tiff'], (head) => startsWith(head, [0x49, 0x49, 0x2a, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2a])),
  sharpReader('gif', ['.gif'], (head) => startsWith(head, ascii('GIF87a')) || startsWith(head, ascii('GIF89a'))),
  sharpReader('avif', ['.avif'], (head) => ftypBrands(head).some((brand) => brand === 'avif' || brand === 'avis')),
  { name: 'dicom', extensions: ['.dcm'], sniff: isDicom, decode: (bytes, options) => decodeDicom(bytes, options, nodeCodecs) },
];

/**
 * Formats recognised by their signature but not read, so the refusal names them. A format that gains
 * a reader leaves this list for `imageReaders`.
 */
const refusedFormats: readonly { name: string; why: string; sniff: (head: Uint8Array) => boolean }[] = [
  { name: 'SVG', why: 'a vector drawing has no pixels of its own', sniff: (head) => /^\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!DOCTYPE svg[^>]*>\s*)?<svg[\s>]/i.test(Buffer.from(head).toString('latin1')) },
  { name: 'PDF', why: 'a document has no pixels of its own', sniff: (head) => startsWith(head, ascii('%PDF-')) },
  // "BM" alone is two letters of text: the DIB header's size (12, 40, 52, 56, 108 or 124) must follow.
  { name: 'BMP', why: 'the bundled libvips has no BMP decoder', sniff: (head) => startsWith(head, ascii('BM')) && [12, 40, 52, 56, 108, 124].includes(head[14] ?? 0) && head[15] === 0 },
  { name: 'HEIC', why: 'the bundled libvips has no HEVC decoder', sniff: (head) => ftypBrands(head).some((brand) => ['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis'].includes(brand)) },
  {
    name: 'JPEG 2000',
    why: 'the bundled libvips has no JPEG 2000 decoder',
    sniff: (head) => startsWith(head, [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20]) || startsWith(head, [0xff, 0x4f, 0xff, 0x51]),
  },
];

/** Every extension a reader claims, sorted: what a folder's image files are named. */
export const imageExtensions: readonly string[] = [...new Set(imageReaders.flatMap((reader) => reader.extensions))].sort();

/** The extension of a path, lower-case with the dot ('' for none; a leading dot is a hidden name, not an extension). */
export function extensionOf(path: string): string {
  const name = path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot).toLowerCase() : '';
}

export function hasImageExtension(path: string): boolean {
  return imageExtensions.includes(extensionOf(path));
}

/** The reader whose signature matches, if any. */
export function readerFor(head: Uint8Array): ImageReader | undefined {
  return imageReaders.find((reader) => reader.sniff(head));
}

/** The format whose extension a file name has, upper-case ('DICOM' for `.dcm`), if a reader claims it. */
function namedFormat(file: string): string | undefined {
  const extension = extensionOf(file);
  return imageReaders.find((reader) => reader.extensions.includes(extension))?.name.toUpperCase();
}

/**
 * Why content no reader claims is refused: empty, a known format osteo does not read, or not an
 * image; a file named like a format it does not hold (`film.dcm` without DICOM's "DICM" at byte
 * 128) is told so, since that is what its owner will look for.
 */
function refusal(head: Uint8Array, file: string, size: number): { kind: UnreadableReason; reason: string } {
  const named = namedFormat(file);
  const claim = named === undefined ? '' : ` named ${extensionOf(file)}`;
  if (head.length === 0) return { kind: 'zero-byte', reason: `an empty file (0 bytes)${named === undefined ? '' : `${claim}: no ${named} image in it`}` };
  const known = refusedFormats.find((format) => format.sniff(head));
  const readable = `osteo reads ${imageReaders.map((reader) => reader.name.toUpperCase()).join(', ')}`;
  const article = (name: string) => (/^[AEFHILMNORSX]/.test(name) ? 'an' : 'a');
  if (known !== undefined) return { kind: 'unsupported-format', reason: `${article(known.name)} ${known.name} file${claim}, which osteo does not read (${known.why}); ${readable}` };
  if (named === 'DICOM') {
    return { kind: 'not-an-image', reason: `a file named .dcm without DICOM's signature ("DICM" at byte 128; it has ${count(size)} bytes): a truncated or damaged DICOM file, or a bare data set without the file header that osteo reads` };
  }
  if (named !== undefined) return { kind: 'not-an-image', reason: `a file${claim}, but its content is not a recognised image format (${readable}): a damaged ${named} file, or something else renamed` };
  return { kind: 'not-an-image', reason: `content is not a recognised image format (${readable})` };
}

/** The first `sniffBytes` bytes of a file (fewer for a short one). */
async function readHead(file: string): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(sniffBytes);
    const { bytesRead } = await handle.read(head, 0, sniffBytes, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Is this regular file an image, by the seam's rule (a reader's extension, or a reader's signature)?
 * A file that cannot be opened counts by its name alone: reading it later reports why it failed.
 */
export async function isImageFile(file: string): Promise<boolean> {
  if (hasImageExtension(file)) return true;
  const head = await readHead(file).catch(() => undefined);
  return head !== undefined && readerFor(head) !== undefined;
}

/** Is this file one of the image formats osteo recognises but does not read (SVG, PDF, BMP, HEIC, JPEG 2000)? */
export async function isRefusedImageFile(file: string): Promise<boolean> {
  const head = await readHead(file).catch(() => undefined);
  return head !== undefined && refusedFormats.some((format) => format.sniff(head));
}

/**
 * Read an image file (or its bytes) through the reader its content names. Every failure is an
 * UnreadableImageError naming the file, with its reason; errors of the file system (no such file,
 * no permission) propagate as they are.
 */
export async function readImage(source: string | Buffer, options: ReadOptions = {}): Promise<DecodedImage> {
  const file = typeof source === 'string' ? source : '<buffer>';
  const bytes = typeof source === 'string' ? await readFile(source) : source;
  const head = bytes.subarray(0, sniffBytes);
  const reader = readerFor(head);
  if (reader === undefined) {
    const { kind, reason } = refusal(head, file, bytes.length);
    throw new UnreadableImageError(file, kind, `cannot decode image: ${reason}`);
  }
  let decoded: DecodedImage;
  try {
    decoded = await reader.decode(bytes, { maxPixels: options.maxPixels ?? maxInputPixels, dicomWindow: options.dicomWindow ?? 'auto' });
  } catch (error) {
    if (error instanceof ImageFault) throw new UnreadableImageError(file, error.kind, error.message, error.facts);
    const detail = errorMessage(error);
    throw new UnreadableImageError(file, truncation.test(detail) ? 'truncated' : 'unreadable', `cannot decode image: ${detail}`);
  }
  const { width, height } = decoded.pixels;
  if (Math.max(width, height) > maxAspectRatio * Math.min(width, height)) {
    const reason = `${width}×${height} px, ${(Math.max(width, height) / Math.min(width, height)).toFixed(0)} times as ${width > height ? 'wide as it is high' : 'high as it is wide'}, beyond the ${maxAspectRatio}:1 osteo reads (a knee film is within 3:1): crop it to the film`;
    throw new UnreadableImageError(file, 'extreme-aspect-ratio', reason, decoded.facts);
  }
  return decoded;
}

/** readImage, with a file that cannot be read at all (no permission, vanished) a DataError naming it too. */
export async function decodeImage(source: string | Buffer, options: ReadOptions = {}): Promise<DecodedImage> {
  try {
    return await readImage(source, options);
  } catch (error) {
    if (error instanceof DataError || typeof source !== 'string') throw error;
    throw new DataError(source, `cannot read the file: ${errorMessage(error)}`);
  }
}

/** Decode any supported image to RGB in 8-bit units (EXIF-rotated). Errors are DataErrors naming the file. */
export async function decodeRgb(source: string | Buffer, options: ReadOptions = {}): Promise<RgbImage> {
  return (await decodeImage(source, options)).pixels;
}

/**
 * A file's pixels under each of `windows`, keyed by their text form (dicomWindowText), and the first
 * decode's facts: decoded once, and once more per further window only for a DICOM file (a window
 * means nothing to other formats). Errors as decodeRgb's.
 */
export async function decodeUnderWindows(
  source: string,
  windows: readonly DicomWindow[],
  options: Omit<ReadOptions, 'dicomWindow'> = {},
): Promise<{ images: Map<string, RgbImage>; facts: ImageFacts }> {
  const images = new Map<string, RgbImage>();
  let facts: ImageFacts | undefined;
  for (const dicomWindow of windows) {
    const key = dicomWindowText(dicomWindow);
    if (images.has(key)) continue;
    const decoded = await decodeImage(source, { ...options, dicomWindow });
    facts ??= decoded.facts;
    if (decoded.facts.format !== 'dicom') {
      for (const other of windows) images.set(dicomWindowText(other), decoded.pixels);
      break;
    }
    images.set(key, decoded.pixels);
  }
  if (facts === undefined) throw new Error(`decodeUnderWindows(${source}): no window given`);
  return { images, facts };
}
