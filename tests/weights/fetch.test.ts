import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError, downloadFile } from '../../src/util/index.js';
import { checkpointUrl, fetchCheckpoint, fetchPretrainedWeights, pretrainedPath } from '../../src/weights/fetch.js';
import { getModel } from '../../src/models/index.js';
import { serve, startServer, type TestServer } from '../data/helpers.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) % 256));
const prefix = createHash('sha256').update(body).digest('hex').slice(0, 8);
const checkpoint = { sourceUrl: 'https://example.invalid/never-used.pth', fileName: `tiny-${prefix}.pth`, sha256Prefix: prefix };
const fast = { retries: 2, backoffMs: 5 };

let server: TestServer;
test.before(async () => {
  server = await startServer();
  server.route(`/good/${checkpoint.fileName}`, serve(body));
  server.route(`/flaky/${checkpoint.fileName}`, (request, response, hit) => (hit === 1 ? response.writeHead(502).end() : serve(body)(request, response, hit)));
  server.route(`/evil/${checkpoint.fileName}`, serve(Buffer.concat([body, Buffer.from('x')])));
  server.route('/registry/resnet18-f37072fd.pth', serve(body));
  server.route('/registry/resnet50-0676ba61.pth', serve(body));
});
test.after(async () => {
  await server.close();
});

const hits = (path: string) => server.requests.filter((r) => r.url === path).length;

test('hash ok: downloaded, renamed into place, skipped the second time; a corrupt local file is replaced', async () => {
  const dir = await tempDir();
  try {
    const first = await fetchCheckpoint(checkpoint, { dest: dir.path, urlBase: `${server.url}/good`, http: fast });
    assert.is(first.skipped, false);
    assert.is(first.path, join(dir.path, checkpoint.fileName));
    assert.ok((await readFile(first.path)).equals(body));
    assert.ok(first.sha256.startsWith(prefix));
    assert.equal(await readdir(dir.path), [checkpoint.fileName], 'no partial file left');
    const second = await fetchCheckpoint(checkpoint, { dest: dir.path, urlBase: `${server.url}/good`, http: fast });
    assert.is(second.skipped, true);
    assert.is(hits(`/good/${checkpoint.fileName}`), 1);
    await writeFile(first.path, 'truncated');
    const logs: string[] = [];
    const third = await fetchCheckpoint(checkpoint, { dest: dir.path, urlBase: `${server.url}/good`, http: fast, log: (l) => logs.push(l) });
    assert.is(third.skipped, false);
    assert.match(logs[0]!, /fails its hash check/);
    assert.ok((await readFile(first.path)).equals(body));
  } finally {
    await dir.cleanup();
  }
});

test('a 5xx is retried; OSTEO_WEIGHTS_URL is the base when --url is not given', async () => {
  const dir = await tempDir();
  try {
    const result = await fetchCheckpoint(checkpoint, { dest: dir.path, env: { OSTEO_WEIGHTS_URL: `${server.url}/flaky/` }, http: fast });
    assert.is(result.url, `${server.url}/flaky/${checkpoint.fileName}`);
    assert.is(hits(`/flaky/${checkpoint.fileName}`), 2);
    assert.is(checkpointUrl(checkpoint, undefined, {}), checkpoint.sourceUrl);
  } finally {
    await dir.cleanup();
  }
});

test('hash mismatch: refused, nothing left under the real name or as a partial file', async () => {
  const dir = await tempDir();
  try {
    await rejection(
      () => fetchCheckpoint(checkpoint, { dest: dir.path, urlBase: `${server.url}/evil`, http: fast }),
      (e: Error) => e instanceof DataError && e.message.includes(`does not start with ${prefix}`),
    );
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('404 is a clear error without retry', async () => {
  const dir = await tempDir();
  try {
    await rejection(
      () => fetchCheckpoint(checkpoint, { dest: dir.path, urlBase: `${server.url}/missing`, http: fast }),
      UserError, /no checkpoint at .*404/,
    );
    assert.is(hits(`/missing/${checkpoint.fileName}`), 1);
    assert.not.ok(existsSync(join(dir.path, checkpoint.fileName)));
  } finally {
    await dir.cleanup();
  }
});

test('by model name: the registry file name and hash are used (a stand-in file fails resnet18\'s hash)', async () => {
  const dir = await tempDir();
  try {
    const entry = getModel('resnet18');
    assert.is(entry.weights[0].fileName, 'resnet18-f37072fd.pth');
    await rejection(
      () => fetchPretrainedWeights('resnet18', { dest: dir.path, urlBase: `${server.url}/registry`, http: fast }),
      DataError, /does not start with f37072fd/,
    );
    assert.is(hits('/registry/resnet18-f37072fd.pth'), 1);
    assert.is(pretrainedPath('resnet18', dir.path), join(dir.path, 'resnet18-f37072fd.pth'));
    await rejection(() => fetchPretrainedWeights('vgg16', { dest: dir.path }), UserError, /resnet18/);
  } finally {
    await dir.cleanup();
  }
});

test("by tag name: a model's other weights (ResNet50 V1) are fetched by their own file name and hash; the model name gives its default (V2)", async () => {
  const dir = await tempDir();
  try {
    assert.is(pretrainedPath('resnet50', dir.path), join(dir.path, 'resnet50-11ad3fa6.pth'));
    assert.is(pretrainedPath('resnet50.imagenet1k_v1', dir.path), join(dir.path, 'resnet50-0676ba61.pth'));
    await rejection(
      () => fetchPretrainedWeights('resnet50.imagenet1k_v1', { dest: dir.path, urlBase: `${server.url}/registry`, http: fast }),
      (e: Error) => e instanceof DataError && /does not start with 0676ba61/.test(e.message),
    );
    assert.is(hits('/registry/resnet50-0676ba61.pth'), 1);
    await rejection(
      () => fetchPretrainedWeights('resnet50.imagenet1k_v3', { dest: dir.path }),
      (e: Error) => e instanceof UserError && /unknown weights 'resnet50\.imagenet1k_v3'/.test(e.message) && e.message.includes('resnet50.imagenet1k_v1'),
    );
    assert.equal(await readdir(dir.path), [], 'nothing written for a refused or unknown checkpoint');
  } finally {
    await dir.cleanup();
  }
});

test('a bad URL base (--url or OSTEO_WEIGHTS_URL) is a UserError naming the value and its source, before any file is touched', async () => {
  const dir = await tempDir();
  try {
    for (const [options, source, value] of [
      [{ urlBase: 'notaurl' }, '--url', 'notaurl'],
      [{ urlBase: 'ftp://mirror.example/weights' }, '--url', 'ftp://mirror.example/weights'],
      [{ env: { OSTEO_WEIGHTS_URL: 'mirror/weights' } }, 'OSTEO_WEIGHTS_URL', 'mirror/weights'],
    ] as const) {
      await rejection(
        () => fetchCheckpoint(checkpoint, { dest: join(dir.path, 'out'), http: fast, ...options }),
        (e: Error) => e instanceof UserError && e.message.startsWith(`${source}: '${value}'`) && /http/.test(e.message),
      );
    }
    assert.equal(await readdir(dir.path), [], 'the destination folder was not created');
    await rejection(() => downloadFile('notaurl', join(dir.path, 'x'), { retries: 0 }), UserError, /'notaurl' is not a URL/);
  } finally {
    await dir.cleanup();
  }
});

test.run();
