/**
 * The decoder packages the web viewer's page imports statically (dicom-page.ts) ship no types; Node
 * loads the same files with require (dicom-codecs-node.ts). dicom-codecs.ts describes their shapes.
 */
declare module '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs' {
  const factory: (options?: object) => Promise<unknown>;
  export default factory;
}
declare module '@cornerstonejs/codec-charls/decodewasmjs' {
  const factory: (options?: object) => Promise<unknown>;
  export default factory;
}
declare module '@cornerstonejs/codec-openjpeg/decodewasmjs' {
  const factory: (options?: object) => Promise<unknown>;
  export default factory;
}
declare module 'jpeg-lossless-decoder-js' {
  export class Decoder {
    decode(buffer: ArrayBuffer, offset: number, length: number, numBytes: number): ArrayBuffer;
    xDim: number;
    yDim: number;
  }
}
