/** `osteo serve`: a folder over HTTP on 127.0.0.1 only, GET/HEAD of files inside it and nothing else. */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { allowedHost, resolveRequestPath, serveDirectory, serveHost } from '../../src/eval/web-serve.js';
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
function get(port: number, path: string, method = 'GET', host?: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((done, fail) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: host === undefined ? {} : { host } }, (response) => {
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

test('symbolic links are followed only to regular files inside the folder', async () => {
  await mkdir(join(root, 'outside-dir'), { recursive: true });
  await writeFile(join(root, 'outside-dir', 'x.png'), 'outside the served folder too');
  await symlink(join(root, 'secret.txt'), join(site, 'passwd.png'));
  await symlink('../secret.txt', join(site, 'relative.png'));
  await symlink(join(root, 'outside-dir'), join(site, 'linked-dir'));
  await symlink(join(site, 'index.html'), join(site, 'inside.html'));
  await symlink(join(site, 'gone.png'), join(site, 'dangling.png'));
  execFileSync('mkfifo', [join(site, 'pipe.png')]);
  // The served folder may itself be reached through a link: its real path is the root.
  await symlink(site, join(root, 'site-link'));
  const served = await serveDirectory(join(root, 'site-link'), { port: 0, log: () => undefined });
  try {
    for (const path of ['/passwd.png', '/relative.png', '/linked-dir/x.png']) {
      const response = await get(served.port, path);
      assert.is(response.status, 403, path);
      assert.not.match(response.body, /outside the served folder/, path);
    }
    const inside = await get(served.port, '/inside.html');
    assert.equal([inside.status, inside.body], [200, '<!doctype html><p>hi</p>'], 'a link to a file inside is served');
    assert.is((await get(served.port, '/dangling.png')).status, 404);
    assert.is((await get(served.port, '/pipe.png')).status, 404, 'a FIFO is not a regular file (and does not block the server)');
    assert.is((await get(served.port, '/index.html')).status, 200);
  } finally {
    await served.close();
    for (const name of ['passwd.png', 'relative.png', 'linked-dir', 'inside.html', 'dangling.png', 'pipe.png']) await rm(join(site, name), { force: true });
    await rm(join(root, 'site-link'), { force: true });
  }
});

test('only requests that name this server as their Host are answered (no DNS rebinding)', async () => {
  const served = await serveDirectory(site, { port: 0 });
  try {
    const port = served.port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) assert.is((await get(port, '/index.html', 'GET', host)).status, 200, host);
    for (const host of [`evil.example:${port}`, `127.0.0.1:${port + 1}`, 'localhost', `127.0.0.1.evil.example:${port}`, `[::1]:${port}`]) {
      const response = await get(port, '/index.html', 'GET', host);
      assert.is(response.status, 421, host);
      assert.not.match(response.body, /hi/, host);
    }
  } finally {
    await served.close();
  }
  assert.ok(allowedHost('localhost', 80) && allowedHost('127.0.0.1:80', 80), 'port 80 may be left out, as browsers do');
  assert.not.ok(allowedHost(undefined, 8080));
});

test('a file that cannot be opened or read is answered 403/404/500 and logged once; the server keeps serving', async () => {
  const failing = (code: string) => Object.assign(new Error(`${code}: simulated`), { code });
  const lines: string[] = [];
  const openFile = async (path: string): Promise<FileHandle> => {
    if (path.endsWith('denied.js')) throw failing('EACCES');
    if (path.endsWith('deleted.js')) throw failing('ENOENT'); // removed between the stat and the open
    if (path.endsWith('broken.js')) throw failing('EIO');
    const handle = await open(path, 'r');
    if (!path.endsWith('unreadable.js')) return handle;
    // Opens, then every read fails: a damaged disk.
    return Object.assign(Object.create(handle) as FileHandle, { read: () => Promise.reject(failing('EIO')), stat: () => handle.stat(), close: () => handle.close() });
  };
  for (const name of ['denied.js', 'deleted.js', 'broken.js', 'unreadable.js']) await writeFile(join(site, name), 'x');
  const served = await serveDirectory(site, { port: 0, log: (line) => lines.push(line), openFile });
  try {
    assert.is((await get(served.port, '/denied.js')).status, 403);
    assert.is((await get(served.port, '/deleted.js')).status, 404);
    assert.is((await get(served.port, '/broken.js')).status, 500);
    assert.is((await get(served.port, '/unreadable.js')).status, 500);
    const after = await get(served.port, '/index.html');
    assert.equal([after.status, after.body], [200, '<!doctype html><p>hi</p>'], 'still serving');
    assert.is(lines.length, 4, lines.join('\n'));
    assert.match(lines[0]!, /^osteo serve: GET \/denied\.js: 403: EACCES/);
    assert.match(lines[3]!, /^osteo serve: GET \/unreadable\.js: 500: EIO/);
    assert.ok(lines.every((line) => !line.includes('\n')));
  } finally {
    await served.close();
    for (const name of ['denied.js', 'deleted.js', 'broken.js', 'unreadable.js']) await rm(join(site, name), { force: true });
  }
});

test.run();
