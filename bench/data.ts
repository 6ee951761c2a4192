/**
 * Data-pipeline benchmark: decode + augment images/s of the training loader (cold cache, disk cache,
 * in memory). Run: `npx tsx bench/data.ts [--data DIR] [--image-size 224] [--batch-size 16]
 * [--augment seed] [--images 96] [--json]` — or `osteo bench data`. Without --data it times a
 * generated phantom of 640-pixel films.
 */
import { parseArgs } from 'node:util';
import { loadAugmentConfig } from '../src/config/index.js';
import { benchData } from '../src/data/index.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string' },
    'image-size': { type: 'string', default: '224' },
    'batch-size': { type: 'string', default: '16' },
    augment: { type: 'string', default: 'seed' },
    images: { type: 'string', default: '96' },
    json: { type: 'boolean', default: false },
  },
});

const result = await benchData({
  dataDir: values.data,
  imageSize: Number(values['image-size']),
  batchSize: Number(values['batch-size']),
  augment: { name: values.augment, config: await loadAugmentConfig(values.augment) },
  images: Number(values.images),
  log: values.json ? undefined : (line) => process.stderr.write(`${line}\n`),
});
if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
else {
  const { cold, disk, memory } = result.imagesPerSec;
  console.log(
    `decode+augment at ${result.imageSize}² (${result.augment}, ${result.images} images of ${result.sourceSize}, batch ${result.batchSize}): ` +
      `cold ${cold.toFixed(1)} images/s, disk cache ${disk.toFixed(1)} images/s, in memory ${memory.toFixed(1)} images/s ` +
      `(${result.machine.cpus} × ${result.machine.model}, Node ${result.machine.node})`,
  );
}
