/**
 * The DICOM reader of the image-reader seam (readers.ts). dicom-parser reads the data set (every
 * uncompressed transfer syntax, deflate included); dicom-codecs.ts decodes the compressed ones. The
 * pixels then go through the grayscale pipeline of DICOM PS3.3 C.11 in double precision, in this
 * order, and only then become the seam's RGB in 8-bit units:
 *
 * 1. stored value: the BitsStored bits ending at HighBit of each BitsAllocated container, sign-extended
 *    when PixelRepresentation is 1; planar colour (PlanarConfiguration 1) is interleaved;
 * 2. modality LUT: the Modality LUT Sequence if present, else RescaleSlope × value + RescaleIntercept
 *    (a negative slope included);
 * 3. VOI: the file's first VOI LUT (sequence) or first window (WindowCenter/Width with its
 *    VOILUTFunction: LINEAR per C.11.2.1.2.1, LINEAR_EXACT, SIGMOID), as `ReadOptions.dicomWindow`
 *    chooses (readers.ts `DicomWindow`); the result is a value in [0, 1];
 * 4. MONOCHROME1 is inverted (1 − y), after VOI, as the standard orders it;
 * 5. the [0, 1] value × 255, kept as a float; a film whose every value lands on an 8-bit level is
 *    returned as bytes, the same image as its lossless 8-bit export.
 *
 * Colour images (RGB, or YBR decoded to RGB by the JPEG codec) take no LUT: value / (2^BitsStored − 1).
 * A multi-frame file is refused (`dicom-multiframe`): a knee radiograph is one frame, and the first
 * frame of a stack or a cine is not a film. A file without pixel data (a structured report, a
 * DICOMDIR, a presentation state) is refused as `dicom-no-pixels`, a syntax without a decoder as
 * `dicom-unsupported-syntax`, naming it.
 *
 * No tag value leaves this module except the image's own geometry and pixel description: the facts
 * name which patient-identifying attributes are present, never what they hold.
 *
 * The web viewer's page runs this same module (bundled through dicom-page.ts), so it imports only
 * dicom-parser, the codec table and image-types.ts: nothing of Node, nothing of util/. The codecs
 * come in as an argument (dicom-codecs-node.ts in Node, the bundle's own in the page).
 */
import dicomParser from 'dicom-parser';
import { decodeCompressedFrame, transferSyntaxes, unreadSyntaxNames, type DicomCodecs, type FrameLayout } from './dicom-codecs.js';
import { ImageFault, type DecodedImage, type DicomWindow, type ImageFacts, type ReadOptions } from './image-types.js';

const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));
const preamble = ascii('DICM');

/** DICOM's signature: "DICM" after the 128-byte preamble (PS3.10 7.1); the reader is chosen by it. */
export function isDicom(head: Uint8Array): boolean {
  return head.length >= 132 && preamble.every((b, i) => head[128 + i] === b);
}

type DataSet = dicomParser.DataSet;

/**
 * Attributes that identify the patient or the encounter (after DICOM PS3.15 Annex E's basic profile):
 * the index lists which of these a file carries, by keyword.
 */
export const identifyingAttributes: readonly { tag: string; keyword: string }[] = [
  { tag: 'x00100010', keyword: 'PatientName' },
  { tag: 'x00100020', keyword: 'PatientID' },
  { tag: 'x00100030', keyword: 'PatientBirthDate' },
  { tag: 'x00100040', keyword: 'PatientSex' },
  { tag: 'x00101010', keyword: 'PatientAge' },
  { tag: 'x00101000', keyword: 'OtherPatientIDs' },
  { tag: 'x00101001', keyword: 'OtherPatientNames' },
  { tag: 'x00101040', keyword: 'PatientAddress' },
  { tag: 'x00102154', keyword: 'PatientTelephoneNumbers' },
  { tag: 'x00080050', keyword: 'AccessionNumber' },
  { tag: 'x00080080', keyword: 'InstitutionName' },
  { tag: 'x00080090', keyword: 'ReferringPhysicianName' },
  { tag: 'x00200010', keyword: 'StudyID' },
];

const truncation = /past end|overr(ead|un)|truncat|end of buffer|beyond/i;

/** dicom-parser throws strings, Errors, or `{ exception, dataSet }`, a decoder Errors or strings; their words, whichever. */
function parserMessage(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'exception' in error) return String((error as { exception: unknown }).exception);
  return error instanceof Error ? error.message : String(error);
}

const deflated = '1.2.840.10008.1.2.1.99';

/**
 * dicom-parser's options for a deflated data set where it has no zlib (the page): the data set
 * inflated beforehand by the platform's `inflateRaw`, behind the file meta header it leaves as is.
 */
async function inflation(bytes: Uint8Array, codecs: DicomCodecs): Promise<dicomParser.ParseDicomOptions | undefined> {
  if (codecs.inflateRaw === undefined) return undefined;
  // readPart10Header is in dicom-parser's API but not in its typings; it leaves the stream's position after the header.
  const { readPart10Header } = dicomParser as unknown as { readPart10Header(bytes: Uint8Array): DataSet & { position: number } };
  const header = readPart10Header(bytes);
  if (header.string('x00020010')?.trim() !== deflated) return undefined;
  const body = await codecs.inflateRaw(bytes.subarray(header.position));
  const whole = new Uint8Array(header.position + body.length);
  whole.set(bytes.subarray(0, header.position));
  whole.set(body, header.position);
  return { inflater: () => whole };
}

async function parse(bytes: Uint8Array, codecs: DicomCodecs): Promise<DataSet> {
  try {
    // In Node a Buffer, not a bare Uint8Array: dicom-parser's zlib inflation (deflated syntax) calls Buffer methods.
    return dicomParser.parseDicom(bytes, await inflation(bytes, codecs));
  } catch (error) {
    const detail = parserMessage(error);
    throw new ImageFault(truncation.test(detail) ? 'truncated' : 'unreadable', `cannot parse the DICOM data set: ${detail}`);
  }
}

/** The keywords of the identifying attributes present with a value. */
export function identifyingTagsOf(dataSet: DataSet): string[] {
  return identifyingAttributes.filter(({ tag }) => (dataSet.elements[tag]?.length ?? 0) > 0).map(({ keyword }) => keyword);
}

/** The `index`-th value of a decimal-string attribute, if it has one. */
function decimal(dataSet: DataSet, tag: string, index = 0): number | undefined {
  const text = dataSet.string(tag)?.split('\\')[index]?.trim();
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

interface PixelModule extends FrameLayout {
  syntax: string;
  bitsStored: number;
  highBit: number;
  signed: boolean;
  planar: boolean;
  photometric: string;
  frames: number;
}

function pixelModule(dataSet: DataSet): PixelModule {
  const bitsAllocated = dataSet.uint16('x00280100') ?? 0;
  const bitsStored = dataSet.uint16('x00280101') ?? bitsAllocated;
  return {
    // A file without a meta header is implicit VR little endian (PS3.5 A.1), as dicom-parser reads it.
    syntax: dataSet.string('x00020010')?.trim() ?? '1.2.840.10008.1.2',
    rows: dataSet.uint16('x00280010') ?? 0,
    columns: dataSet.uint16('x00280011') ?? 0,
    samplesPerPixel: dataSet.uint16('x00280002') ?? 1,
    bitsAllocated,
    bitsStored,
    highBit: dataSet.uint16('x00280102') ?? bitsStored - 1,
    signed: dataSet.uint16('x00280103') === 1,
    planar: dataSet.uint16('x00280006') === 1,
    photometric: dataSet.string('x00280004')?.trim() ?? '',
    frames: Math.max(1, Math.trunc(decimal(dataSet, 'x00280008') ?? 1)),
  };
}

/** What the file is when it has no pixels, for the refusal. */
function withoutPixels(dataSet: DataSet): string {
  const sopClass = dataSet.string('x00080016')?.trim() ?? dataSet.string('x00020002')?.trim();
  if (dataSet.elements['x00041220'] !== undefined || sopClass === '1.2.840.10008.1.3.10') return 'a DICOMDIR (a media directory, not an image)';
  if (sopClass?.startsWith('1.2.840.10008.5.1.4.1.1.88.') === true) return 'a structured report (no image)';
  return `no Pixel Data element${sopClass === undefined ? '' : ` (SOP class ${sopClass})`}`;
}

const count = (n: number) => n.toLocaleString('en-US');

/** Every check on the declared image that needs no pixels: the refusals before any decode. */
function checkDeclared(dataSet: DataSet, module: PixelModule, facts: ImageFacts, maxPixels: number): void {
  if (dataSet.elements['x7fe00010'] === undefined) throw new ImageFault('dicom-no-pixels', `cannot decode image: ${withoutPixels(dataSet)}`, facts);
  const syntax = transferSyntaxes[module.syntax];
  if (syntax === undefined) {
    const name = unreadSyntaxNames[module.syntax];
    const known = Object.entries(transferSyntaxes).map(([uid, { name }]) => `${name} (${uid})`).join(', ');
    throw new ImageFault('dicom-unsupported-syntax', `cannot decode image: transfer syntax ${module.syntax}${name === undefined ? '' : ` (${name})`} has no decoder in osteo; it reads ${known}`, facts);
  }
  if (module.rows === 0 || module.columns === 0) throw new ImageFault('unreadable', `cannot decode image: the data set declares a ${module.columns}×${module.rows} image`, facts);
  const pixels = module.rows * module.columns;
  if (pixels > maxPixels) {
    throw new ImageFault('too-large', `${module.columns}×${module.rows} = ${count(pixels)} pixels, above the limit of ${count(maxPixels)} (a guard against decompression bombs)`, facts);
  }
  if (module.frames > 1) {
    throw new ImageFault('dicom-multiframe', `cannot decode image: ${module.frames} frames; osteo reads single-frame films (a stack or a cine has no one film to classify)`, facts);
  }
  const gray = module.photometric === 'MONOCHROME1' || module.photometric === 'MONOCHROME2';
  const colour = module.photometric === 'RGB' || (syntax.compressed && module.photometric.startsWith('YBR_'));
  if (!(gray && module.samplesPerPixel === 1) && !(colour && module.samplesPerPixel === 3)) {
    throw new ImageFault('unreadable', `cannot decode image: photometric interpretation "${module.photometric}" with ${module.samplesPerPixel} samples per pixel is not read (MONOCHROME1/2 or RGB)`, facts);
  }
  if (![8, 16, 32].includes(module.bitsAllocated) || module.bitsStored < 1 || module.bitsStored > module.bitsAllocated || module.highBit + 1 < module.bitsStored || module.highBit >= module.bitsAllocated) {
    throw new ImageFault('unreadable', `cannot decode image: BitsAllocated ${module.bitsAllocated}, BitsStored ${module.bitsStored}, HighBit ${module.highBit} do not describe a readable sample`, facts);
  }
}

/** The raw containers of an uncompressed frame, length-checked against rows × columns × samples × bits. */
function nativeSamples(dataSet: DataSet, module: PixelModule): ArrayLike<number> {
  const element = dataSet.elements['x7fe00010']!;
  const samples = module.rows * module.columns * module.samplesPerPixel;
  const bytesPerSample = module.bitsAllocated / 8;
  const needed = samples * bytesPerSample;
  const bytes = dataSet.byteArray;
  if (element.dataOffset + element.length > bytes.length) {
    throw new ImageFault('truncated', `cannot decode image: the pixel data is declared as ${count(element.length)} bytes but the file ends after ${count(bytes.length - element.dataOffset)}`);
  }
  // An odd length is padded to even (PS3.5 7.1.1).
  if (element.length !== needed && element.length !== needed + (needed % 2)) {
    throw new ImageFault(
      'unreadable',
      `cannot decode image: the pixel data is ${count(element.length)} bytes, but ${module.rows} rows × ${module.columns} columns × ${module.samplesPerPixel} samples × ${module.bitsAllocated} bits need ${count(needed)}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + element.dataOffset, needed);
  const little = module.syntax !== '1.2.840.10008.1.2.2';
  if (bytesPerSample === 1) return new Uint8Array(view.buffer, view.byteOffset, needed);
  const out = bytesPerSample === 2 ? new Uint16Array(samples) : new Uint32Array(samples);
  for (let i = 0; i < samples; i++) out[i] = bytesPerSample === 2 ? view.getUint16(i * 2, little) : view.getUint32(i * 4, little);
  return out;
}

async function compressedSamples(dataSet: DataSet, module: PixelModule, codecs: DicomCodecs): Promise<ArrayLike<number>> {
  const element = dataSet.elements['x7fe00010']!;
  if (element.encapsulatedPixelData !== true || (element.fragments?.length ?? 0) === 0) {
    throw new ImageFault('unreadable', `cannot decode image: transfer syntax ${module.syntax} is compressed but the pixel data is not encapsulated in fragments`);
  }
  let frame: Uint8Array;
  try {
    frame = dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, 0, element.fragments!.length);
  } catch (error) {
    const detail = parserMessage(error);
    throw new ImageFault(truncation.test(detail) ? 'truncated' : 'unreadable', `cannot decode image: ${detail}`);
  }
  let samples: Uint8Array | Uint16Array;
  try {
    samples = await decodeCompressedFrame(module.syntax, frame, module, codecs);
  } catch (error) {
    const detail = parserMessage(error);
    throw new ImageFault(truncation.test(detail) ? 'truncated' : 'unreadable', `cannot decode image: ${transferSyntaxes[module.syntax]!.name}: ${detail}`);
  }
  const expected = module.rows * module.columns * module.samplesPerPixel;
  if (samples.length !== expected) throw new ImageFault('unreadable', `cannot decode image: the decoder gave ${count(samples.length)} samples, ${count(expected)} are declared`);
  return samples;
}

/** Stage 1: containers to stored values (the BitsStored bits ending at HighBit, sign-extended), interleaved. */
function storedValues(raw: ArrayLike<number>, module: PixelModule, compressed: boolean): Float64Array {
  const shift = module.highBit + 1 - module.bitsStored;
  const range = 2 ** module.bitsStored;
  const half = range / 2;
  const out = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    // Division, not >>>, so a 32-bit container stays exact.
    const bits = Math.floor(raw[i]! / 2 ** shift) % range;
    out[i] = module.signed && bits >= half ? bits - range : bits;
  }
  if (!module.planar || compressed || module.samplesPerPixel === 1) return out;
  // PlanarConfiguration 1: RRR…GGG…BBB… to RGBRGB….
  const pixels = module.rows * module.columns;
  const interleaved = new Float64Array(out.length);
  for (let c = 0; c < module.samplesPerPixel; c++) for (let p = 0; p < pixels; p++) interleaved[p * module.samplesPerPixel + c] = out[c * pixels + p]!;
  return interleaved;
}

/** A LUT of a Modality or VOI LUT Sequence item: descriptor (entries, first mapped value, bits) and data. */
interface Lut {
  first: number;
  data: Float64Array;
  bits: number;
}

function readLut(item: DataSet, signed: boolean): Lut | undefined {
  const descriptor = item.elements['x00283002'];
  const data = item.elements['x00283006'];
  if (descriptor === undefined || data === undefined) return undefined;
  const entries = item.uint16('x00283002', 0) || 65536; // 0 means 2^16 (PS3.3 C.11.1.1)
  let first = item.uint16('x00283002', 1) ?? 0;
  if (signed && first >= 32768) first -= 65536;
  const bits = item.uint16('x00283002', 2) ?? 16;
  const values = new Float64Array(entries);
  const wide = data.length >= entries * 2;
  for (let i = 0; i < entries; i++) values[i] = wide ? (item.uint16('x00283006', i) ?? 0) : item.byteArray[data.dataOffset + i]!;
  return { first, data: values, bits };
}

function lookUp(lut: Lut, x: number): number {
  const index = Math.min(Math.max(Math.round(x) - lut.first, 0), lut.data.length - 1);
  return lut.data[index]!;
}

function firstLut(dataSet: DataSet, sequenceTag: string, signed: boolean): Lut | undefined {
  const item = dataSet.elements[sequenceTag]?.items?.[0]?.dataSet;
  return item === undefined ? undefined : readLut(item, signed);
}

/** Stage 2: the modality LUT, in place. */
function applyModality(values: Float64Array, dataSet: DataSet, module: PixelModule): void {
  const lut = firstLut(dataSet, 'x00283000', module.signed);
  if (lut !== undefined) {
    for (let i = 0; i < values.length; i++) values[i] = lookUp(lut, values[i]!);
    return;
  }
  const slope = decimal(dataSet, 'x00281053') ?? 1;
  const intercept = decimal(dataSet, 'x00281052') ?? 0;
  if (slope === 1 && intercept === 0) return;
  for (let i = 0; i < values.length; i++) values[i] = values[i]! * slope + intercept;
}

/** The modality values the stored range maps to: what `file` windows with when the file has none. */
function storedRange(dataSet: DataSet, module: PixelModule): [number, number] {
  const low = module.signed ? -(2 ** (module.bitsStored - 1)) : 0;
  const ends = Float64Array.of(low, low + 2 ** module.bitsStored - 1);
  applyModality(ends, dataSet, module);
  return [Math.min(ends[0]!, ends[1]!), Math.max(ends[0]!, ends[1]!)];
}

type Voi = (x: number) => number;

/** The window function of C.11.2.1.2 (and C.11.2.1.3 for SIGMOID), onto [0, 1]. */
function windowFunction(center: number, width: number, kind: string): Voi {
  if (kind === 'SIGMOID') return (x) => 1 / (1 + Math.exp((-4 * (x - center)) / width));
  if (kind === 'LINEAR_EXACT') return (x) => Math.min(Math.max((x - center) / width + 0.5, 0), 1);
  const low = center - 0.5 - (width - 1) / 2;
  const high = center - 0.5 + (width - 1) / 2;
  return (x) => (x <= low ? 0 : x > high ? 1 : (x - (center - 0.5)) / (width - 1) + 0.5);
}

/** Stage 3's function, as `choice` picks it. */
function voiFunction(values: Float64Array, dataSet: DataSet, module: PixelModule, choice: DicomWindow): Voi {
  if (typeof choice === 'object') {
    if (!(choice.width >= 1)) throw new ImageFault('unreadable', `cannot decode image: window width ${choice.width} is below 1`);
    return windowFunction(choice.center, choice.width, 'LINEAR');
  }
  const lut = firstLut(dataSet, 'x00283010', module.signed);
  if (lut !== undefined) {
    const top = 2 ** lut.bits - 1;
    return (x) => lookUp(lut, x) / top;
  }
  const center = decimal(dataSet, 'x00281050');
  const width = decimal(dataSet, 'x00281051');
  const kind = dataSet.string('x00281056')?.trim().toUpperCase() || 'LINEAR';
  if (center !== undefined && width !== undefined && width >= (kind === 'LINEAR' ? 1 : Number.MIN_VALUE)) return windowFunction(center, width, kind);
  let [low, high] = choice === 'file' ? storedRange(dataSet, module) : [Infinity, -Infinity];
  if (choice === 'auto') for (const v of values) [low, high] = [Math.min(low, v), Math.max(high, v)];
  // A flat image has no contrast to stretch: it is mid-gray.
  return high > low ? (x) => (x - low) / (high - low) : () => 0.5;
}

/**
 * Stages 3–5 for a grayscale frame: VOI, MONOCHROME1 inversion, then the seam's 8-bit units, as bytes
 * when every level is (within 1e-6 of) a whole 8-bit level, else as floats.
 */
function grayToRgb(values: Float64Array, voi: Voi, invert: boolean, width: number, height: number): DecodedImage['pixels'] {
  const levels = new Float64Array(values.length);
  let whole = true;
  for (let i = 0; i < values.length; i++) {
    const y = voi(values[i]!);
    const level = (invert ? 1 - y : y) * 255;
    levels[i] = level;
    if (whole && Math.abs(level - Math.round(level)) > 1e-6) whole = false;
  }
  const data = whole ? new Uint8Array(values.length * 3) : new Float32Array(values.length * 3);
  for (let i = 0; i < levels.length; i++) {
    const level = whole ? Math.round(levels[i]!) : levels[i]!;
    data[3 * i] = level;
    data[3 * i + 1] = level;
    data[3 * i + 2] = level;
  }
  return { data, width, height };
}

function colourToRgb(values: Float64Array, module: PixelModule): DecodedImage['pixels'] {
  const top = 2 ** module.bitsStored - 1;
  if (top === 255) return { data: Uint8Array.from(values), width: module.columns, height: module.rows };
  return { data: Float32Array.from(values, (v) => (v / top) * 255), width: module.columns, height: module.rows };
}

/** The reader's decode: a DICOM file's bytes to the seam's pixels and facts, with these codecs. */
export async function decodeDicom(bytes: Uint8Array, { maxPixels, dicomWindow }: Required<ReadOptions>, codecs: DicomCodecs): Promise<DecodedImage> {
  const dataSet = await parse(bytes, codecs);
  const module = pixelModule(dataSet);
  const facts: ImageFacts = {
    format: 'dicom',
    width: module.columns,
    height: module.rows,
    channels: module.samplesPerPixel,
    bitDepth: module.bitsStored,
    frames: module.frames,
    identifyingTags: identifyingTagsOf(dataSet),
  };
  try {
    checkDeclared(dataSet, module, facts, maxPixels);
    const compressed = transferSyntaxes[module.syntax]!.compressed;
    const raw = compressed ? await compressedSamples(dataSet, module, codecs) : nativeSamples(dataSet, module);
    const values = storedValues(raw, module, compressed);
    if (module.samplesPerPixel === 3) return { pixels: colourToRgb(values, module), facts };
    applyModality(values, dataSet, module);
    const voi = voiFunction(values, dataSet, module, dicomWindow);
    return { pixels: grayToRgb(values, voi, module.photometric === 'MONOCHROME1', module.columns, module.rows), facts };
  } catch (error) {
    if (error instanceof ImageFault && error.facts === undefined) throw new ImageFault(error.kind, error.message, facts);
    throw error;
  }
}
