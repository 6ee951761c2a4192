/**
 * The DICOM codecs in Node: the cornerstone wasm modules and jpeg-lossless-decoder-js, loaded from
 * node_modules on first use (no network is touched), and the paths of the wasm binaries that the
 * web export copies beside its page (dicom-page.ts fetches them there).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { wasmCodecs, wasmLoader, type DicomCodecs, type LosslessDecoder, type WasmFactory } from './dicom-codecs.js';

const require = createRequire(import.meta.url);

export const nodeCodecs: DicomCodecs = {
  wasm: wasmLoader((codec) => require(`@cornerstonejs/codec-${codec}/decodewasmjs`) as WasmFactory),
  jpegLossless: () => (require('jpeg-lossless-decoder-js') as { Decoder: new () => LosslessDecoder }).Decoder,
};

/** The codecs' wasm binaries, for a web export to copy beside index.html. */
export function dicomCodecWasmFiles(): string[] {
  return wasmCodecs.map((codec) => require.resolve(`@cornerstonejs/codec-${codec}/decodewasm`));
}

/** The page's DICOM reader for esbuild to bundle: dicom-page.ts under tsx, the compiled dicom-page.js under dist/. */
export function dicomPageEntry(): string {
  const extension = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return fileURLToPath(new URL(`./dicom-page.${extension}`, import.meta.url));
}
