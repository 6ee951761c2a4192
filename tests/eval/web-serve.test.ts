/** `osteo serve`: a folder over HTTP on 127.0.0.1 only, GET/HEAD of files inside it and nothing else. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveRequestPath, serveDirectory, serveHost } from '../../src/eval/web-serve.js';
import { UserError } from '../../src/util/index.js';

let root = '';
let site = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'osteo-serve-'));
  site = join(root, 'site');
  await mkdir(join(site, 'models', 'a'), { recursive: true });
  await writeFile(join(site, 'index.html'), '<!doctype html><p>hi</p>');
  await writeFile(join(site, 'models', 'a', 'model.json'), '{"a":1}');
  await writeFile(join(site, 'x.wasm'), Buffer.from([0, 97, 115, 109]));
  await writeFile(join(root, 'secret.txt'), 'outside the served folder');
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A raw request (the path is sent as written: no client-side normalization of `..`). */
function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((done, fail) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => done({ status: response.statusCode!, type: response.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', fail);
    req.end();
  });
}

test('serves files with their content types on 127.0.0.1, index.html for /', async () => {
  const served = await serveDirectory(site, { port: 0 });
  try {
    assert.is(serveHost, '127.0.0.1');
    assert.equal((served.server.address() as { address: string }).address, '127.0.0.1');
    assert.match(served.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const index = await get(served.port, '/?image=probe.png');
    assert.is(index.status, 200);
    assert.match(index.type ?? '', /text\/html/);
    assert.match(index.body, /<p>hi<\/p>/);
    const model = await get(served.port, '/models/a/model.json');
    assert.equal([model.status, model.body], [200, '{"a":1}']);
    assert.match(model.type ?? '', /application\/json/);
    assert.is((await get(served.port, '/x.wasm')).type, 'application/wasm');
    const head = await get(served.port, '/index.html', 'HEAD');
    assert.equal([head.status, head.body], [200, '']);
    assert.is((await get(served.port, '/missing.js')).status, 404);
    assert.is((await get(served.port, '/models/')).status, 404, 'no directory listings');
    assert.is((await get(served.port, '/index.html', 'POST')).status, 405);
  } finally {
    await served.close();
  }
});

test('never serves a file outside the folder', async () => {
  assert.is(resolveRequestPath(site, '/../secret.txt'), null);
  assert.is(resolveRequestPath(site, '/%2e%2e/secret.txt'), null);
  assert.is(resolveRequestPath(site, '/models/%2e%2e/%2e%2e/secret.txt'), null);
  assert.is(resolveRequestPath(site, '/%00'), null);
  assert.is(resolveRequestPath(site, '/%E0%A4%A'), null, 'malformed escapes');
  assert.is(resolveRequestPath(site, '/models/a/model.json?x=1'), join(site, 'models', 'a', 'model.json'));
  const served = await serveDirectory(site, { port: 0 });
  try {
    for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/models/..%2f..%2fsecret.txt']) {
      const response = await get(served.port, path);
      assert.ok(response.status === 403 || response.status === 404, `${path}: ${response.status}`);
      assert.not.match(response.body, /outside the served folder/);
    }
  } finally {
    await served.close();
  }
});

test('a missing folder, a busy port and a bad port are user errors', async () => {
  await serveDirectory(join(root, 'nope')).then(
    () => assert.unreachable('served a missing folder'),
    (e: unknown) => assert.ok(e instanceof UserError && /not a folder/.test(e.message), String(e)),
  );
  const first = await serveDirectory(site, { port: 0 });
  try {
    await serveDirectory(site, { port: first.port }).then(
      () => assert.unreachable('bound a busy port'),
      (e: unknown) => assert.ok(e instanceof UserError && /in use/.test(e.message), String(e)),
    );
  } finally {
    await first.close();
  }
  await serveDirectory(site, { port: 70000 }).then(
    () => assert.unreachable('accepted port 70000'),
    (e: unknown) => assert.ok(e instanceof UserError, String(e)),
  );
});

test.run();
