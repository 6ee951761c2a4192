/**
 * The config-file reader: a UTF-8 byte-order mark is accepted, a key given twice is refused naming
 * the key and the file, and a value JSON cannot spell (1e309) is reported as what it became.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readConfigFile, resolveTrainConfig } from '../../src/config/index.js';
import { DataError, UserError } from '../../src/util/index.js';

let dir: string;
test.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'osteo-config-files-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusal(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  return assert.unreachable('accepted') as never;
}

test('a file that starts with a UTF-8 byte-order mark reads as the same JSON', async () => {
  const file = join(dir, 'bom.json');
  await writeFile(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"model": "resnet18", "epochs": 3}')]));
  assert.equal(await readConfigFile(file), { model: 'resnet18', epochs: 3 });
  const config = await resolveTrainConfig({ configFile: file, flags: { data: 'datasets/x' } });
  assert.is(config.epochs, 3);
  // Only at the start: a mark elsewhere is still not JSON.
  await writeFile(file, '{"epochs": 3}\uFEFF');
  assert.instance(await refusal(readConfigFile(file)), DataError);
});

test('a key given twice in one object is refused, naming the key, its line and the file', async () => {
  const file = join(dir, 'twice.json');
  await writeFile(file, '{\n  "model": "resnet18",\n  "epochs": 3,\n  "epochs": 30\n}\n');
  const error = await refusal(readConfigFile(file, 'training config'));
  assert.instance(error, DataError);
  assert.is((error as DataError).file, file);
  assert.match(error.message, /the key "epochs" is given twice \(line 4\)/);
  // Nested and inside a list the path says where; an escaped spelling is the same key.
  await writeFile(file, '{"optimizer": {"lr": 0.001, "\\u006cr": 0.1}}');
  assert.match((await refusal(readConfigFile(file))).message, /"optimizer\.lr" is given twice/);
  await writeFile(file, '{"models": [{"model": "resnet18"}, {"model": "resnet50", "model": "resnet18"}]}');
  assert.match((await refusal(readConfigFile(file))).message, /"models\.1\.model" is given twice/);
  // The same key in two different objects is fine.
  await writeFile(file, '{"a": {"lr": 1}, "b": {"lr": 2}, "lr": 3}');
  assert.equal(await readConfigFile(file), { a: { lr: 1 }, b: { lr: 2 }, lr: 3 });
  // And the training config refuses it before merging anything.
  await writeFile(file, '{"model": "resnet18", "epochs": 3, "epochs": 30}');
  assert.match((await refusal(resolveTrainConfig({ configFile: file, flags: { data: 'x' } }))).message, /"epochs" is given twice/);
});

test('--set epochs=1e309 says Infinity, not null', async () => {
  for (const [set, shown] of [['epochs=1e309', 'Infinity'], ['optimizer.lr=-1e309', '-Infinity']] as const) {
    const error = await refusal(resolveTrainConfig({ flags: { model: 'resnet18', data: 'x' }, sets: [set] }));
    assert.instance(error, UserError);
    assert.match(error.message, `(got ${shown})`);
    assert.not.match(error.message, /null/);
  }
  const file = join(dir, 'huge.json');
  await writeFile(file, '{"model": "resnet18", "epochs": 1e309}');
  assert.match((await refusal(resolveTrainConfig({ configFile: file, flags: { data: 'x' } }))).message, /epochs: .*\(got Infinity\)/);
});

test.run();
