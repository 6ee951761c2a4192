/** data: Kaggle download, phantom dataset, index + de-duplication, the leak-free split and its flow of images, external labelled folders and their copies of training images, the image readers and the one eval transform, a resize cache, augmentation ops, class-weighted sampling and the batch loader. */
export { classNames, numClasses, classIndex, type ClassName } from './classes.js';
export {
  resizeShorter,
  resizedShape,
  centerCrop,
  centerCropBox,
  normalize,
  cropAndNormalizeInto,
  applyEvalTransform,
  preprocessForModel,
  evalTransformSpec,
  imagenetNormalization,
  displayBytes,
  type EvalTransform,
  type EvalTransformSpec,
  type Normalization,
  type ImageSource,
  type DecodeOptions,
} from './image.js';
export {
  decodeRgb,
  decodeImage,
  decodeUnderWindows,
  readImage,
  readerFor,
  imageReaders,
  imageExtensions,
  hasImageExtension,
  isImageFile,
  isRefusedImageFile,
  extensionOf,
  maxInputPixels,
  maxAspectRatio,
  parseDicomWindow,
  dicomWindowText,
  sniffBytes,
  ImageFault,
  UnreadableImageError,
  type RgbImage,
  type DecodedImage,
  type ImageFacts,
  type ImageReader,
  type ReadOptions,
  type DicomWindow,
  type UnreadableReason,
} from './readers.js';
export {
  downloadKaggleDataset,
  resolveKaggleCredentials,
  countClassFiles,
  formatCounts,
  kaggleDataset,
  defaultKaggleApi,
  publishedCounts,
  type DownloadDatasetOptions,
  type DownloadDatasetResult,
  type KaggleCredentials,
} from './kaggle.js';
export { synthesizePhantom, renderPhantom, phantomFormats, type PhantomFormat, type SynthOptions, type SynthResult, type PhantomImage } from './phantom.js';
export {
  indexDataset,
  indexPath,
  readIndex,
  formatIndexReport,
  conflictPolicies,
  defaultNearThreshold,
  type ConflictPolicy,
  type IndexOptions,
  type IndexReport,
  type IndexRow,
} from './indexer.js';
export { splitDataset, readSplitManifest, manifestContentHashes, trainContentHashes, verifyContentHash, assignSplits, formatSplitReport, splitManifestPath, splits, type Split, type ManifestRow, type ManifestHash, type SplitOptions, type SplitReport } from './split.js';
export { augmentConfigSchema, sampleAugmentation, applyAugmentation, type AugmentConfig, type AugmentParams } from './augment.js';
export { createResizedCache, cacheDir, type ResizedCache, type CacheOptions } from './cache.js';
export { createLoader, classCounts, inverseFrequencyWeights, sampleOrder, type Batch, type Loader, type LoaderOptions, type SamplerKind } from './loader.js';
export { previewAugmentations, type PreviewOptions, type PreviewResult } from './preview.js';
export { benchData, type BenchDataOptions, type BenchDataResult } from './bench.js';
export { splitDefaults } from './split.js';
export { assignFolds, foldManifest, publishedSplit, countLeakedTestImages, writeManifestView, type FoldRow } from './folds.js';
export { contentHash } from './hash.js';
export { dicomCodecWasmFiles, dicomPageEntry } from './dicom-codecs-node.js';
export type { PageDicom } from './dicom-page.js';
export { dataFlow, type DataFlow } from './flow.js';
export { scanLabelledFolder, trainingReference, findCopies, seenSplits, type LabelledFolder, type LabelledImage, type ReferenceImage, type CopyMatch } from './external.js';
