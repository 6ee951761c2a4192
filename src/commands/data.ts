import { Option, type Command } from 'commander';
import { byteProgress, countProgress, formatBytes } from '../util/index.js';
import { classNames, conflictPolicies, defaultKaggleApi, defaultNearThreshold, downloadKaggleDataset, formatCounts, formatIndexReport, formatSplitReport, indexDataset, maxInputPixels, previewAugmentations, splitDataset, synthesizePhantom, phantomFormats, type ConflictPolicy, type PhantomFormat } from '../data/index.js';
import { dicomWindowOptions, loadAugmentConfig, resolveDicomWindow, resolveSplitConfig, splitOptions } from '../config/index.js';
import { addTableOptions, finiteNumber, positiveInt, printJson } from './common.js';

const stderrLine = (line: string) => process.stderr.write(`${line}\n`);

function conflictsOption(): Option {
  return new Option('--conflicts <policy>', 'what to do with duplicate groups whose members carry different labels')
    .choices([...conflictPolicies])
    .default('drop');
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('get, check, split and preview the knee X-ray dataset');

  data
    .command('download')
    .description('download the Kaggle dataset (credentials: KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json) into DEST/{Normal,Osteopenia,Osteoporosis}')
    .option('--dest <dir>', 'where the dataset goes', 'datasets/knee')
    .option('--api-url <url>', "Kaggle's API base URL", defaultKaggleApi)
    .option('--force', 'download again into a dataset osteo downloaded at --dest (replaces only the files osteo wrote; other folders are refused)')
    .option('--json', 'print one JSON document')
    .action(async (options: { dest: string; apiUrl: string; force?: boolean; json?: boolean }) => {
      const result = await downloadKaggleDataset({
        dest: options.dest,
        apiUrl: options.apiUrl,
        force: options.force,
        progress: options.json ? undefined : byteProgress('download'),
        http: { onRetry: ({ attempt, delayMs, reason }) => stderrLine(`retry ${attempt} in ${(delayMs / 1000).toFixed(1)} s: ${reason}`) },
        log: options.json ? undefined : stderrLine,
      });
      if (options.json) return printJson(result);
      console.log(`${result.skipped ? 'already present' : `downloaded ${formatBytes(result.bytes)}`} → ${result.dest}`);
      console.log(formatCounts(result.counts, result.published));
    });

  data
    .command('synth')
    .description('generate the deterministic phantom dataset (knee-like radiographs with planted duplicates and one label conflict)')
    .option('--dest <dir>', 'where the dataset goes', 'datasets/phantom')
    .option('--per-class <n>', 'distinct images per class', positiveInt('--per-class'), 60)
    .option('--size <px>', 'image width in pixels', positiveInt('--size'), 256)
    .option('--seed <n>', 'random seed', finiteNumber('--seed'), 42)
    .option('--duplicate-rate <r>', 'fraction (0 to 0.9) of Normal and Osteoporosis files that are byte-identical copies, as in the Kaggle set (about 0.5)', finiteNumber('--duplicate-rate'), 0)
    .addOption(
      new Option('--format <format>', 'raster (PNG and JPEG files) or dicom (DICOM files: 8-bit MONOCHROME2/MONOCHROME1 and 12-bit variants; planted copies stay PNG/JPEG)')
        .choices(phantomFormats)
        .default('raster'),
    )
    .option('--force', 'replace a phantom already at --dest (only the files synth writes; a folder that is not a phantom is refused)')
    .option('--json', 'print one JSON document')
    .action(async (options: { dest: string; perClass: number; size: number; seed: number; duplicateRate: number; format: PhantomFormat; force?: boolean; json?: boolean }) => {
      const result = await synthesizePhantom(options);
      if (options.json) return printJson(result);
      if (result.reused) return console.log(`${result.dest} already holds this phantom (same seed, size, images per class and duplicate rate): nothing to do`);
      console.log(`wrote ${result.expected.files} files to ${result.dest} in ${result.seconds.toFixed(1)} s`);
      console.log(classNames.map((name, label) => `${name} ${result.files[label]}`).join(', '));
      console.log(
        `planted: ${result.expected.exactDuplicateGroups} exact-duplicate groups (one is the label conflict), ` +
          `${result.expected.nearDuplicateGroups} near duplicates; details in ${result.dest}/phantom.json`,
      );
    });

  const index = data
    .command('index')
    .description('decode and check every file; find bad files, exact and near duplicates and label conflicts; write DIR/index.csv')
    .requiredOption('--data <dir>', 'dataset folder with class subfolders');
  const indexWindow = addTableOptions(index, dicomWindowOptions);
  index
    .addOption(conflictsOption())
    .option('--near-threshold <bits>', 'perceptual-hash distance (0 to 256 bits) for near duplicates', finiteNumber('--near-threshold'), defaultNearThreshold)
    .option('--max-pixels <n>', 'refuse images larger than this (decompression-bomb guard)', positiveInt('--max-pixels'), maxInputPixels)
    .option('--json', 'print the report as one JSON document')
    .action(async (options: { data: string; conflicts: ConflictPolicy; nearThreshold: number; maxPixels: number; json?: boolean; [attribute: string]: unknown }) => {
      const { report } = await indexDataset({
        dataDir: options.data,
        conflicts: options.conflicts,
        nearThreshold: options.nearThreshold,
        maxPixels: options.maxPixels,
        dicomWindow: resolveDicomWindow(indexWindow(options)),
        progress: options.json ? undefined : countProgress('index', 'files'),
      });
      if (options.json) printJson(report);
      else console.log(formatIndexReport(report));
    });

  const split = data
    .command('split')
    .description('write DIR/splits.csv: stratified by class, over duplicate groups (none straddles splits), deterministic for a seed')
    .requiredOption('--data <dir>', 'dataset folder (indexed first if DIR/index.csv is missing)');
  // --val, --test, --seed: the split option table's flags, defaults and validation (src/config/split.ts).
  const splitFlags = addTableOptions(split, splitOptions);
  split
    .addOption(conflictsOption().default(undefined, 'drop, if the index must be built'))
    .option('--json', 'print the report as one JSON document')
    .action(async (options: { data: string; conflicts?: ConflictPolicy; json?: boolean }) => {
      const settings = resolveSplitConfig(splitFlags(options));
      const { report } = await splitDataset({ dataDir: options.data, ...settings, conflicts: options.conflicts });
      if (options.json) printJson(report);
      else console.log(formatSplitReport(report));
    });

  const preview = data
    .command('preview')
    .description('a contact sheet PNG of augmented training samples with their labels')
    .requiredOption('--data <dir>', 'dataset folder');
  const previewWindow = addTableOptions(preview, dicomWindowOptions);
  preview
    .option('--augment <file>', 'augmentation preset (none, seed, strong) or JSON file', 'seed')
    .option('--n <n>', 'number of samples', positiveInt('--n'), 16)
    .option('--out <file>', 'image to write: .png, .jpg or .webp (the format follows the extension)', 'preview.png')
    .option('--image-size <px>', 'tile size', positiveInt('--image-size'), 160)
    .option('--seed <n>', 'random seed', finiteNumber('--seed'), 0)
    .option('--json', 'print one JSON document')
    .action(async (options: { data: string; augment: string; n: number; out: string; imageSize: number; seed: number; json?: boolean; [attribute: string]: unknown }) => {
      const dicomWindow = resolveDicomWindow(previewWindow(options));
      const result = await previewAugmentations({ dataDir: options.data, augment: await loadAugmentConfig(options.augment), n: options.n, out: options.out, imageSize: options.imageSize, seed: options.seed, dicomWindow });
      if (options.json) printJson(result);
      else console.log(`wrote ${result.out} (${result.tiles.length} samples, ${result.width}×${result.height})`);
    });
}
