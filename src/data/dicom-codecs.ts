/**
 * The compressed DICOM transfer syntaxes and the decoder of each: the maintained wasm codecs of the
 * cornerstone project (libjpeg-turbo for JPEG baseline, CharLS for JPEG-LS, OpenJPEG for JPEG 2000),
 * jpeg-lossless-decoder-js for JPEG lossless (processes 14 and 14 SV1), and RLE by hand (dicom-rle.ts).
 * Where the decoders come from is the caller's (`DicomCodecs`): Node loads them from node_modules
 * (dicom-codecs-node.ts), the web viewer's page from its bundle (dicom-page.ts); each wasm module is
 * instantiated on first use, once per process or page. A decoder's output is the frame's samples as
 * unsigned integers, interleaved by pixel; the caller masks them to BitsStored and sign-extends them
 * as for native pixel data. This file imports nothing of Node: the page runs it too.
 */
import { decodeRle } from './dicom-rle.js';

/** What the frame is declared to hold, from the data set. */
export interface FrameLayout {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
}

/** The transfer syntaxes osteo reads, by UID, with their names (a refusal names the syntax). */
export const transferSyntaxes: Record<string, { name: string; compressed: boolean }> = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', compressed: false },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', compressed: false },
  '1.2.840.10008.1.2.1.99': { name: 'Deflated Explicit VR Little Endian', compressed: false },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian', compressed: false },
  '1.2.840.10008.1.2.4.50': { name: 'JPEG Baseline (Process 1)', compressed: true },
  '1.2.840.10008.1.2.4.51': { name: 'JPEG Extended (Process 2 & 4), 8-bit samples only', compressed: true },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless, Non-Hierarchical (Process 14)', compressed: true },
  '1.2.840.10008.1.2.4.70': { name: 'JPEG Lossless, First-Order Prediction (Process 14, SV1)', compressed: true },
  '1.2.840.10008.1.2.4.80': { name: 'JPEG-LS Lossless', compressed: true },
  '1.2.840.10008.1.2.4.81': { name: 'JPEG-LS Near-Lossless', compressed: true },
  '1.2.840.10008.1.2.4.90': { name: 'JPEG 2000 (Lossless Only)', compressed: true },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', compressed: true },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', compressed: true },
};

/** Names of syntaxes osteo recognises but has no decoder for, so the refusal says what the file is. */
export const unreadSyntaxNames: Record<string, string> = {
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile',
  '1.2.840.10008.1.2.4.101': 'MPEG2 High Profile',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 (Lossless Only)',
  '1.2.840.10008.1.2.4.202': 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000',
  '1.2.840.10008.1.2.4.52': 'JPEG Extended (Process 3 & 5), retired',
  '1.2.840.10008.1.2.4.53': 'JPEG Spectral Selection, retired',
};

/** The embind interface the three cornerstone wasm decoders share. */
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number };
  delete(): void;
}
type WasmModule = Record<string, new () => WasmDecoder>;
/** An emscripten module factory, as each cornerstone codec's decodewasmjs file exports it. */
export type WasmFactory = (options?: object) => Promise<WasmModule>;

/** The three cornerstone codecs, by the name of their package (@cornerstonejs/codec-NAME). */
export const wasmCodecs = ['libjpeg-turbo-8bit', 'charls', 'openjpeg'] as const;
export type WasmCodec = (typeof wasmCodecs)[number];

export interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset: number, length: number, numBytes: number): ArrayBuffer;
  xDim: number;
  yDim: number;
}

/** The decoders a platform provides: the wasm modules, and jpeg-lossless-decoder-js's Decoder class. */
export interface DicomCodecs {
  wasm(codec: WasmCodec): Promise<WasmModule>;
  jpegLossless(): new () => LosslessDecoder;
  /**
   * Raw inflate, where dicom-parser cannot inflate a deflated data set itself (it uses Node's zlib;
   * a browser has DecompressionStream, which is asynchronous). Absent in Node.
   */
  inflateRaw?(data: Uint8Array): Promise<Uint8Array>;
}

/**
 * `DicomCodecs.wasm` over a platform's factories: each module instantiated once, on first use, with
 * `options` (the page's says where the .wasm files are).
 */
export function wasmLoader(factoryOf: (codec: WasmCodec) => WasmFactory, options: object = {}): DicomCodecs['wasm'] {
  const modules = new Map<WasmCodec, Promise<WasmModule>>();
  return (codec) => {
    let loaded = modules.get(codec);
    if (loaded === undefined) {
      // Emscripten prints the codec's log (OpenJPEG's "[INFO] …") to stdout, which carries --json: silenced.
      loaded = factoryOf(codec)({ print: () => undefined, printErr: () => undefined, ...options });
      modules.set(codec, loaded);
    }
    return loaded;
  };
}

/** One frame through a cornerstone wasm decoder; the decoder's memory is released whatever happens. */
async function decodeWasm(module: WasmModule, className: string, frame: Uint8Array, layout: FrameLayout): Promise<Uint8Array | Uint16Array> {
  const decoder = new module[className]!();
  try {
    decoder.getEncodedBuffer(frame.length).set(frame);
    decoder.decode();
    const info = decoder.getFrameInfo();
    if (info.width !== layout.columns || info.height !== layout.rows || info.componentCount !== layout.samplesPerPixel) {
      throw new Error(`the compressed frame is ${info.width}×${info.height}×${info.componentCount}, the data set declares ${layout.columns}×${layout.rows}×${layout.samplesPerPixel}`);
    }
    const decoded = decoder.getDecodedBuffer();
    // Copy out of the wasm heap before the decoder is deleted.
    if (info.bitsPerSample <= 8) return Uint8Array.from(decoded);
    const words = new Uint16Array(decoded.length / 2);
    new Uint8Array(words.buffer).set(decoded.subarray(0, words.length * 2));
    return words;
  } finally {
    decoder.delete();
  }
}

function decodeJpegLossless(Decoder: new () => LosslessDecoder, frame: Uint8Array, layout: FrameLayout): Uint8Array | Uint16Array {
  const bytesPerSample = layout.bitsAllocated <= 8 ? 1 : 2;
  const decoder = new Decoder();
  // A copy that owns its ArrayBuffer (the frame may be a Buffer view into a larger pool, whose slice() is no copy).
  const copy = Uint8Array.from(frame);
  const out = decoder.decode(copy.buffer, 0, copy.length, bytesPerSample);
  if (decoder.xDim !== layout.columns || decoder.yDim !== layout.rows) {
    throw new Error(`the compressed frame is ${decoder.xDim}×${decoder.yDim}, the data set declares ${layout.columns}×${layout.rows}`);
  }
  return bytesPerSample === 1 ? new Uint8Array(out) : new Uint16Array(out);
}

/**
 * Decode one compressed frame of `syntax` into interleaved unsigned samples. Throws for a syntax
 * without a decoder (the caller has checked the list) and for a frame its decoder rejects.
 */
export async function decodeCompressedFrame(syntax: string, frame: Uint8Array, layout: FrameLayout, codecs: DicomCodecs): Promise<Uint8Array | Uint16Array> {
  switch (syntax) {
    case '1.2.840.10008.1.2.4.50':
    case '1.2.840.10008.1.2.4.51':
      if (layout.bitsAllocated > 8) throw new Error('12-bit JPEG Extended is not decoded (only 8-bit samples)');
      return decodeWasm(await codecs.wasm('libjpeg-turbo-8bit'), 'JPEGDecoder', frame, layout);
    case '1.2.840.10008.1.2.4.57':
    case '1.2.840.10008.1.2.4.70':
      return decodeJpegLossless(codecs.jpegLossless(), frame, layout);
    case '1.2.840.10008.1.2.4.80':
    case '1.2.840.10008.1.2.4.81':
      return decodeWasm(await codecs.wasm('charls'), 'JpegLSDecoder', frame, layout);
    case '1.2.840.10008.1.2.4.90':
    case '1.2.840.10008.1.2.4.91':
      return decodeWasm(await codecs.wasm('openjpeg'), 'J2KDecoder', frame, layout);
    case '1.2.840.10008.1.2.5':
      return decodeRle(frame, layout);
    default:
      throw new Error(`no decoder for transfer syntax ${syntax}`);
  }
}
