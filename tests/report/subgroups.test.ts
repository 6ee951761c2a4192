import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ageBand, ageBandNames, classificationMetrics, subgroupResults, subgroupsSection, type EvaluationReport, type ImageAttributes } from '../../src/report/index.js';
import { createRng } from '../../src/util/index.js';
import { rng } from '../helpers/random.js';

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'];

test('age bands: the lower edge is inside its band, the upper edge starts the next', () => {
  const edges = [50, 60, 70];
  assert.equal([0, 49.9, 50, 59.99, 60, 69, 70, 101].map((age) => ageBand(age, edges)), ['<50', '<50', '50–60', '50–60', '60–70', '60–70', '≥70', '≥70']);
  assert.equal(ageBandNames(edges), ['<50', '50–60', '60–70', '≥70']);
  assert.equal(ageBandNames([65]), ['<65', '≥65']);
  assert.is(ageBand(30, []), 'all ages');
});

/** `n` images with random labels and probabilities. */
function scored(n: number, seed: number) {
  const random = rng(seed);
  const images = Array.from({ length: n }, (_, i) => ({ path: `${classNames[i % 3]}/x${i}.png`, label: i % 3 }));
  const probabilities = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const raw = [random(), random(), random()].map((v, k) => v + (k === images[i]!.label ? 0.4 : 0));
    const total = raw.reduce((a, b) => a + b, 0);
    raw.forEach((v, k) => (probabilities[i * 3 + k] = v / total));
  }
  return { images, probabilities };
}

test('subgroups: metrics with intervals where there are enough images, too small below the minimum, unknown and unmatched paths listed', () => {
  const { images, probabilities } = scored(60, 5);
  const metadata = new Map<string, ImageAttributes>();
  images.forEach((image, i) => {
    if (i >= 55) return; // five images without a row
    metadata.set(image.path, { site: i < 40 ? 'A' : 'B', ...(i % 10 === 0 ? {} : { age: 40 + i }) });
  });
  metadata.set('Normal/not-evaluated.png', { site: 'A' });
  const results = subgroupResults({
    metadataFile: '/m.csv',
    metadata,
    attributes: ['site', 'age'],
    images,
    models: [{ name: 'm', kind: 'model', probabilities }],
    classNames,
    minSize: 20,
    ageBands: [60, 80],
    rng: () => createRng(3),
    resamples: 200,
  });
  const [site, age] = results.attributes;
  assert.equal(site!.groups.map((g) => [g.value, g.images, g.tooSmall]), [['A', 40, false], ['B', 15, true]]);
  assert.equal(site!.groups[1]!.models, []);
  const a = site!.groups[0]!.models[0]!;
  const indices = Array.from({ length: 40 }, (_, i) => i);
  const predictions = indices.map((i) => {
    const row = Array.from(probabilities.subarray(i * 3, i * 3 + 3));
    return row.indexOf(Math.max(...row));
  });
  assert.is(a.metrics.accuracy, classificationMetrics(indices.map((i) => images[i]!.label), predictions, 3).accuracy);
  assert.ok(a.accuracyInterval.lower <= a.metrics.accuracy && a.metrics.accuracy <= a.accuracyInterval.upper && a.accuracyInterval.lower < a.accuracyInterval.upper);
  // Ages 41–94 (every tenth missing) in bands <60, 60–80, ≥80; band order, not value order.
  const ages = images.slice(0, 55).flatMap((_, i) => (i % 10 === 0 ? [] : [ageBand(40 + i, [60, 80])]));
  const counts = ['<60', '60–80', '≥80'].map((band) => ages.filter((b) => b === band).length);
  assert.equal(counts, [18, 18, 13]);
  assert.equal(age!.groups.map((g) => [g.value, g.images, g.tooSmall]), ['<60', '60–80', '≥80'].map((band, i) => [band, counts[i], true]));
  assert.is(age!.notRecorded, 6);
  assert.equal(results.unknownPaths, ['Normal/not-evaluated.png']);
  assert.equal(results.unmatchedImages, images.slice(55).map((i) => i.path));
  const report = { classNames, models: [], images, bootstrap: { resamples: 200, seed: 3 } } as unknown as EvaluationReport;
  const section = subgroupsSection(report, results);
  const markdown = section.markdown.join('\n');
  assert.match(markdown, /\*\*site = B\*\*: 15 images — too small to report \(minimum 20\)/);
  assert.match(markdown, /\*\*site = A\*\* \(40 images\)/);
  const json = section.json as { attributes: { groups: { tooSmall: boolean; models: { accuracy?: number }[] }[] }[] };
  assert.equal(json.attributes[0]!.groups[1]!.models, []);
  assert.is(json.attributes[0]!.groups[0]!.models[0]!.accuracy, a.metrics.accuracy);
});

test.run();
