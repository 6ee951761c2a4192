/**
 * A minimal DICOM writer for the phantom (`osteo data synth --format dicom`): one uncompressed,
 * single-frame grayscale Digital X-Ray image in Explicit VR Little Endian. Written here rather than
 * through dcmjs because the phantom needs a dozen fixed attributes, and dcmjs's naturalised-dataset
 * writer would bring a large dependency for that; the reader side (dicom.ts) uses dicom-parser, and
 * the tests check these files with pydicom and dcmtk.
 *
 * The files carry no patient attributes at all: the phantom has no patient.
 */
import { createHash } from 'node:crypto';

export interface DicomFilm {
  /** Stored values, row-major, one per pixel (unsigned, below 2^bitsStored). */
  values: Uint16Array | Uint8Array;
  width: number;
  height: number;
  /** 8 (one byte a sample) or 12/16 (two bytes a sample). */
  bitsStored: number;
  photometric: 'MONOCHROME1' | 'MONOCHROME2';
  /** A window to write (WindowCenter/Width), if any. */
  window?: { center: number; width: number };
  /** A rescale to write (RescaleSlope/Intercept), if any. */
  rescale?: { slope: number; intercept: number };
  /** Seeds the instance UIDs, so the same film is the same file. */
  seed: string;
}

/** A UID under the 2.25 root (PS3.5 B.2): the decimal of a 128-bit number derived from `seed`. */
export function uidFrom(seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex').slice(0, 32);
  return `2.25.${BigInt(`0x${hex}`).toString(10)}`;
}

const digitalXRayForPresentation = '1.2.840.10008.5.1.4.1.1.1.1';
const explicitLittle = '1.2.840.10008.1.2.1';
const longLength = new Set(['OB', 'OW', 'SQ', 'UN', 'UT']);

/** One explicit-VR little-endian element, its value padded to an even length (UI with NUL, text with space). */
function element(group: number, elementNumber: number, vr: string, value: Buffer | string | number): Buffer {
  let body: Buffer;
  if (typeof value === 'number') {
    body = Buffer.alloc(vr === 'UL' ? 4 : 2);
    if (vr === 'UL') body.writeUInt32LE(value);
    else body.writeUInt16LE(value);
  } else if (typeof value === 'string') {
    body = Buffer.from(value.length % 2 === 0 ? value : `${value}${vr === 'UI' ? '\0' : ' '}`, 'latin1');
  } else {
    body = value.length % 2 === 0 ? value : Buffer.concat([value, Buffer.alloc(1)]);
  }
  const long = longLength.has(vr);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elementNumber, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(body.length, 8);
  else head.writeUInt16LE(body.length, 6);
  return Buffer.concat([head, body]);
}

/** A decimal string short enough for DS (16 characters). */
const ds = (value: number) => String(Number(value.toPrecision(10)));

/** The film as a DICOM Part 10 file. */
export function writeDicom(film: DicomFilm): Buffer {
  const bytesPerSample = film.bitsStored <= 8 ? 1 : 2;
  const instance = uidFrom(`${film.seed}:instance`);
  const metaBody = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', digitalXRayForPresentation),
    element(0x0002, 0x0003, 'UI', instance),
    element(0x0002, 0x0010, 'UI', explicitLittle),
    element(0x0002, 0x0012, 'UI', uidFrom('osteo implementation')),
  ]);
  const pixels = Buffer.alloc(film.width * film.height * bytesPerSample);
  for (let i = 0; i < film.values.length; i++) {
    if (bytesPerSample === 1) pixels[i] = film.values[i]!;
    else pixels.writeUInt16LE(film.values[i]!, i * 2);
  }
  const optional: Buffer[] = [];
  if (film.window !== undefined) optional.push(element(0x0028, 0x1050, 'DS', ds(film.window.center)), element(0x0028, 0x1051, 'DS', ds(film.window.width)));
  if (film.rescale !== undefined) optional.push(element(0x0028, 0x1052, 'DS', ds(film.rescale.intercept)), element(0x0028, 0x1053, 'DS', ds(film.rescale.slope)), element(0x0028, 0x1054, 'LO', 'US'));
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from('DICM', 'latin1'),
    element(0x0002, 0x0000, 'UL', metaBody.length),
    metaBody,
    element(0x0008, 0x0016, 'UI', digitalXRayForPresentation),
    element(0x0008, 0x0018, 'UI', instance),
    element(0x0008, 0x0060, 'CS', 'DX'),
    element(0x0008, 0x0068, 'CS', 'FOR PRESENTATION'),
    element(0x0020, 0x000d, 'UI', uidFrom(`${film.seed}:study`)),
    element(0x0020, 0x000e, 'UI', uidFrom(`${film.seed}:series`)),
    element(0x0028, 0x0002, 'US', 1),
    element(0x0028, 0x0004, 'CS', film.photometric),
    element(0x0028, 0x0010, 'US', film.height),
    element(0x0028, 0x0011, 'US', film.width),
    element(0x0028, 0x0100, 'US', bytesPerSample * 8),
    element(0x0028, 0x0101, 'US', film.bitsStored),
    element(0x0028, 0x0102, 'US', film.bitsStored - 1),
    element(0x0028, 0x0103, 'US', 0),
    ...optional,
    element(0x7fe0, 0x0010, bytesPerSample === 1 ? 'OB' : 'OW', pixels),
  ]);
}
