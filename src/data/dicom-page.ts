/**
 * The DICOM reader in the web viewer's page: the same module as `osteo predict`'s (dicom.ts: the
 * modality LUT, the VOI window, MONOCHROME1, in double precision) with the same codecs, bundled into
 * viewer.js by the web export (web-export.ts builds it from `dicomPageEntry`). The cornerstone codecs'
 * wasm binaries are fetched from beside the page, where the export copies them
 * (dicom-codecs-node.ts `dicomCodecWasmFiles`); nothing leaves the machine.
 *
 * Deep films stay floats here too, and are resized by resample.ts, as `osteo predict` resizes them.
 * A deflated data set is inflated by the browser's DecompressionStream (dicom-parser's own inflation
 * is Node's zlib).
 */
import libjpegTurbo from '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs';
import charls from '@cornerstonejs/codec-charls/decodewasmjs';
import openjpeg from '@cornerstonejs/codec-openjpeg/decodewasmjs';
import { Decoder } from 'jpeg-lossless-decoder-js';
import { decodeDicom, isDicom } from './dicom.js';
import { wasmLoader, type DicomCodecs, type WasmCodec, type WasmFactory } from './dicom-codecs.js';
import { maxInputPixels, parseDicomWindow, type RgbImage } from './image-types.js';
import { resampleBilinear } from './resample.js';

const factories = { 'libjpeg-turbo-8bit': libjpegTurbo, charls, openjpeg } as unknown as Record<WasmCodec, WasmFactory>;

/** What the page asks of the DICOM reader. */
export interface PageDicom {
  /** The reader's signature test, on the file's bytes. */
  isDicom(bytes: Uint8Array): boolean;
  /** A DICOM file's pixels under a window's text form (`auto`, `file`, `C,W`: a run's recorded window). */
  decode(bytes: Uint8Array, dicomWindow: string): Promise<RgbImage>;
  /** A float image resized to width×height as `osteo predict` resizes deep films (PIL's BILINEAR on floats). */
  resizeFloat(image: { data: Float32Array; width: number; height: number }, width: number, height: number): Float32Array;
}

/** The reader for a page whose codec binaries lie at `baseUrl`. */
export function pageDicom(baseUrl: string): PageDicom {
  const codecs: DicomCodecs = {
    wasm: wasmLoader((codec) => factories[codec], { locateFile: (file: string) => new URL(file, baseUrl).href }),
    jpegLossless: () => Decoder,
    inflateRaw: async (data) => new Uint8Array(await new Response(new Blob([Uint8Array.from(data)]).stream().pipeThrough(new DecompressionStream('deflate-raw'))).arrayBuffer()),
  };
  return {
    isDicom,
    async decode(bytes, text) {
      const dicomWindow = parseDicomWindow(text);
      if (dicomWindow === undefined) throw new Error(`metadata.json names the DICOM window "${text}", which is not auto, file or C,W`);
      return (await decodeDicom(bytes, { maxPixels: maxInputPixels, dicomWindow }, codecs)).pixels;
    },
    resizeFloat: (image, width, height) => resampleBilinear(image.data, image.width, image.height, 3, width, height),
  };
}
