import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { indexDataset, readSplitManifest, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { readSubgroupMetadata } from '../../src/eval/subgroups.js';
import { classificationMetrics } from '../../src/report/index.js';
import { writeRunSplit } from '../../src/runs/index.js';
import { DataError } from '../../src/util/index.js';
import { rejection, refusal } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';
import { writeRunFixture } from './fixtures.js';
import { setupOnce } from './helpers.js';

let backend: BackendHandle;
let root = '';
let cleanup: () => Promise<void> = async () => undefined;
let data = '';
let run = '';

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  ({ path: root, cleanup } = await tempDir('osteo-subgroups-'));
  data = join(root, 'data');
  await synthesizePhantom({ dest: data, perClass: 14, size: 64, seed: 42 });
  await indexDataset({ dataDir: data });
  await splitDataset({ dataDir: data });
  run = (await writeRunFixture(join(root, 'run'), 'resnet18', { imageSize: 32, seed: 41 })).dir;
  await writeRunSplit(run, data);
});

test.after(() => cleanup());

async function table(name: string, text: string): Promise<string> {
  const file = join(root, name);
  await writeFile(file, text);
  return file;
}

test('a metadata table with duplicate paths, paths outside the folder, bad ages or unknown columns is refused naming the row or column', async () => {
  const refused = async (text: string, ...patterns: RegExp[]) => {
    const error = await rejection(readSubgroupMetadata(await table('bad.csv', text)), DataError, /bad\.csv/, ...patterns);
    return error.message;
  };
  await refused('path,site\nNormal/a.png,A\nNormal/b.png,B\nNormal/a.png,C\n', /rows 2 and 4 both describe 'Normal\/a\.png'/);
  await refused('path,site\nNormal/a.png,A\n../outside.png,B\n', /row 3: path '\.\.\/outside\.png' is not inside the data folder/);
  await refused('path,site\n/etc/passwd,A\n', /row 2: path '\/etc\/passwd'/);
  await refused('path,site\nNormal\\a.png,A\n', /row 2: path/);
  await refused('path,age\nNormal/a.png,62\nNormal/b.png,sixty\n', /row 3: age 'sixty' is not an age in years/);
  await refused('path,age\nNormal/a.png,700\n', /row 2: age '700'/);
  await refused('path,site,weight\nNormal/a.png,A,70\n', /unknown column\(s\) 'weight'/, /site, device, sex, age, laterality/);
  await refused('file,site\nNormal/a.png,A\n', /unknown column\(s\) 'file'/);
  await refused('site\nA\n', /no path column/);
  await refused('path,site\n', /has no rows/);
  await refusal(readSubgroupMetadata(join(root, 'absent.csv')), /--metadata .*absent\.csv does not exist/);
  // Refused before any model is loaded: nothing is lost.
  let loaded = false;
  await rejection(
    evaluateRuns({ backend, runs: [run], dataDir: data, metadata: await table('dup.csv', 'path\nNormal/a.png\nNormal/a.png\n'), outDir: null, onModelsLoaded: () => (loaded = true) }),
    DataError,
    /rows 2 and 3/,
  );
  assert.is(loaded, false);
});

test('the metadata table is read: attributes present, blanks not recorded, ages as numbers', async () => {
  const metadata = await readSubgroupMetadata(await table('ok.csv', 'path,sex,age,site\nNormal/a.png,F,61.5,\nOsteopenia/b.png,,,north\n'));
  assert.equal(metadata.attributes, ['site', 'sex', 'age']);
  assert.equal(metadata.byPath.get('Normal/a.png'), { sex: 'F', age: 61.5 });
  assert.equal(metadata.byPath.get('Osteopenia/b.png'), { site: 'north' });
});

test('eval --metadata on the test split: per-subgroup metrics, the too-small rule, age bands, unknown and unmatched paths', async () => {
  const rows = (await readSplitManifest(data)).filter((r) => r.split === 'test');
  assert.ok(rows.length >= 6, `${rows.length} test images`);
  const lines = ['path,site,age'];
  rows.forEach((row, i) => {
    if (i === 0) return; // no row for the first image
    lines.push(`${row.path},${i <= 3 ? 'A' : 'B'},${i % 2 === 0 ? 45 : 72}`);
  });
  lines.push('Normal/typo.png,A,50');
  const out = join(root, 'report');
  const { report } = await evaluateRuns({ backend, runs: [run], dataDir: data, metadata: await table('meta.csv', `${lines.join('\n')}\n`), minSubgroup: 3, ageBands: '50,70', outDir: out, resamples: 100 });
  const json = report.sections!.find((s) => s.key === 'subgroups')!.json as Record<string, any>;
  const [site, age] = json.attributes;
  const b = rows.length - 4;
  assert.equal(site.groups.map((g: any) => [g.value, g.images, g.tooSmall]), [['A', 3, false], ['B', b, b < 3]]);
  if (b < 3) assert.equal(site.groups[1].models, []);
  const indicesA = [1, 2, 3];
  const m = report.models[0]!;
  const expected = classificationMetrics(indicesA.map((i) => rows[i]!.label), indicesA.map((i) => m.predictions[i]!), 3);
  assert.is(site.groups[0].models[0].accuracy, expected.accuracy);
  assert.equal(site.groups[0].models[0].confusion, expected.confusion);
  assert.equal(age.groups.map((g: any) => g.value), ['<50', '≥70']);
  assert.equal(json.unknownPaths, ['Normal/typo.png']);
  assert.equal(json.unmatchedImages, [rows[0]!.path]);
  const record = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8')) as Record<string, any>;
  assert.equal(record.subgroups.unknownPaths, ['Normal/typo.png']);
  assert.match(await readFile(join(out, 'results.md'), 'utf8'), /## Subgroups/);
});

test.run();
