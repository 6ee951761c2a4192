import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError, downloadFile } from '../../src/util/index.js';
import { downloadKaggleDataset, kaggleDataset, resolveKaggleCredentials } from '../../src/data/kaggle.js';
import { extractZip } from '../../src/data/zip.js';
import { resetMidBody, serve, startServer, zipBuffer, type TestServer } from './helpers.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

const datasetPath = `/datasets/download/${kaggleDataset.owner}/${kaggleDataset.slug}`;
const env = { KAGGLE_USERNAME: 'alice', KAGGLE_KEY: 's3cret' };
const goodAuth = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
const fast = { retries: 3, backoffMs: 5, maxBackoffMs: 20, timeoutMs: 5000 };

// The Kaggle archive's own layout: one folder, class subfolders, mixed formats.
const kaggleLike = {
  'OS Collected Data/Normal/N1.jpg': 'n1',
  'OS Collected Data/Normal/N2.png': 'n2',
  'OS Collected Data/Osteopenia/P1.jpg': 'p1',
  'OS Collected Data/Osteoporosis/O1.JPG': 'o1',
  'OS Collected Data/Osteoporosis/O2.jpeg': 'o2',
  'OS Collected Data/Osteoporosis/O3.png': 'o3',
};

let server: TestServer;
let zip: Buffer;
let counter = 0;

test.before(async () => {
  server = await startServer();
  zip = await zipBuffer(kaggleLike);
});
test.after(async () => {
  await server.close();
});

/** A fresh API prefix per test, so the server's per-path hit counts start at zero. */
function api(): { apiUrl: string; path: string } {
  const prefix = `/t${++counter}/api/v1`;
  return { apiUrl: `${server.url}${prefix}`, path: `${prefix}${datasetPath}` };
}

function authorised(handler: (response: import('node:http').ServerResponse, hit: number) => void) {
  return (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse, hit: number) => {
    if (request.headers.authorization !== goodAuth) {
      response.writeHead(401).end('unauthorised');
      return;
    }
    handler(response, hit);
  };
}

test('success: basic auth, zip extracted and normalised to DEST/{Normal,Osteopenia,Osteoporosis}', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const dest = join(dir.path, 'knee');
    const result = await downloadKaggleDataset({ dest, apiUrl, env, http: fast });
    assert.is(result.skipped, false);
    assert.equal(result.counts, [2, 1, 3]);
    assert.equal(result.published, [780, 374, 793]);
    assert.equal((await readdir(dest)).sort(), ['Normal', 'Osteopenia', 'Osteoporosis', 'download.json']);
    assert.is(await readFile(join(dest, 'Osteoporosis', 'O1.JPG'), 'utf8'), 'o1');
    assert.equal(await readdir(dir.path), ['knee'], 'no staging directory is left behind');
    // A second run finds the dataset and does not download again.
    const before = server.requests.length;
    const again = await downloadKaggleDataset({ dest, apiUrl, env, http: fast });
    assert.is(again.skipped, true);
    assert.equal(again.counts, [2, 1, 3]);
    assert.is(server.requests.length, before);
  } finally {
    await dir.cleanup();
  }
});

test('credentials from HOME/.kaggle/kaggle.json, and a clear error naming both places when absent', async () => {
  const dir = await tempDir();
  try {
    await rejection(() => resolveKaggleCredentials({}, dir.path), (error: Error) => {
      return error instanceof UserError && /KAGGLE_USERNAME/.test(error.message) && error.message.includes(join(dir.path, '.kaggle', 'kaggle.json'));
    });
    await mkdir(join(dir.path, '.kaggle'));
    await writeFile(join(dir.path, '.kaggle', 'kaggle.json'), JSON.stringify({ username: 'alice', key: 's3cret' }));
    const credentials = await resolveKaggleCredentials({}, dir.path);
    assert.equal([credentials.username, credentials.key], ['alice', 's3cret']);
    // Environment variables win over the file.
    assert.is((await resolveKaggleCredentials({ KAGGLE_USERNAME: 'bob', KAGGLE_KEY: 'k' }, dir.path)).username, 'bob');
    // And the download uses the file when the environment has nothing.
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const result = await downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env: {}, homeDir: dir.path, http: fast });
    assert.equal(result.counts, [2, 1, 3]);
  } finally {
    await dir.cleanup();
  }
});

test('401 is a clear error without retry, and leaves nothing behind', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const dest = join(dir.path, 'knee');
    await rejection(
      () => downloadKaggleDataset({ dest, apiUrl, env: { KAGGLE_USERNAME: 'alice', KAGGLE_KEY: 'wrong' }, http: fast }),
      UserError, /refused the credentials.*401/,
    );
    assert.is(server.requests.filter((r) => r.url === path).length, 1, 'no retry on 401');
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('404 is a clear error without retry', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api(); // no route: the server answers 404
    await rejection(
      () => downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env, http: fast }),
      UserError, /no dataset.*404/,
    );
    assert.is(server.requests.filter((r) => r.url === path).length, 1);
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('500 then success: retried with backoff; 429 honours Retry-After', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(
      path,
      authorised((response, hit) => {
        if (hit === 1) response.writeHead(500).end('boom');
        else if (hit === 2) response.writeHead(429, { 'retry-after': '0' }).end('slow down');
        else serve(zip)({} as never, response, hit);
      }),
    );
    const retries: { attempt: number; delayMs: number; reason: string }[] = [];
    const result = await downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env, http: { ...fast, onRetry: (info) => retries.push(info) } });
    assert.is(result.attempts, 3);
    assert.equal(result.counts, [2, 1, 3]);
    assert.equal(retries.map((r) => r.delayMs), [5, 0]);
    assert.match(retries[0]!.reason, /500/);
  } finally {
    await dir.cleanup();
  }
});

test('persistent 503: gives up after the retries with the last error', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, (_request, response) => response.writeHead(503).end());
    await rejection(
      () => downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env, http: fast }),
      UserError, /failed after 4 attempts.*503/,
    );
    assert.is(server.requests.filter((r) => r.url === path).length, 4);
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('connection reset mid-body: retried, and the second body is the one kept', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response, hit) => (hit === 1 ? resetMidBody(zip) : serve(zip))({} as never, response, hit)));
    const result = await downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env, http: fast });
    assert.is(result.attempts, 2);
    assert.is(result.bytes, zip.length);
    assert.equal(result.counts, [2, 1, 3]);
  } finally {
    await dir.cleanup();
  }
});

test('a redirect to another origin is followed without sending the credentials there', async () => {
  const dir = await tempDir();
  const storage = await startServer();
  try {
    storage.route('/signed/file.zip', serve(zip));
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => response.writeHead(302, { location: `${storage.url}/signed/file.zip?sig=xyz` }).end()));
    const result = await downloadKaggleDataset({ dest: join(dir.path, 'knee'), apiUrl, env, http: fast });
    assert.equal(result.counts, [2, 1, 3]);
    assert.is(storage.requests.length, 1);
    assert.is(storage.requests[0]!.authorization, undefined);
  } finally {
    await storage.close();
    await dir.cleanup();
  }
});

test('a truncated zip (served whole, so no retry can help) is refused and nothing appears at DEST', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, serve(zip.subarray(0, zip.length - 30)));
    const dest = join(dir.path, 'knee');
    await rejection(
      () => downloadKaggleDataset({ dest, apiUrl, env, http: fast }),
      (error: Error) =>
        error instanceof DataError &&
        /not a readable zip/.test(error.message) &&
        // The staging folder is gone by the time the user reads this: the message names the URL.
        error.message.startsWith(`the archive downloaded from ${apiUrl}${datasetPath}: `) &&
        !error.message.includes('osteo-partial'),
    );
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('zip-slip: an entry escaping DEST refuses the whole archive before anything is written', async () => {
  const dir = await tempDir();
  try {
    // yazl will not write "../", so write a same-length name and patch it in both headers.
    const evil = await zipBuffer({ ...kaggleLike, 'xx/evil.txt': 'pwned' });
    const patched = Buffer.from(evil.toString('latin1').split('xx/evil.txt').join('../evil.txt'), 'latin1');
    const { apiUrl, path } = api();
    server.route(path, serve(patched));
    const dest = join(dir.path, 'sub', 'knee');
    await rejection(
      () => downloadKaggleDataset({ dest, apiUrl, env, http: fast }),
      DataError, /zip-slip/,
    );
    assert.not.ok(existsSync(join(dir.path, 'sub', 'evil.txt')));
    assert.not.ok(existsSync(dest));
    // The extractor on its own refuses absolute names too.
    const absolute = Buffer.from((await zipBuffer({ 'aaaaaaaaaaa': 'x' })).toString('latin1').split('aaaaaaaaaaa').join('/etc/passwd'), 'latin1');
    const zipPath = join(dir.path, 'abs.zip');
    await writeFile(zipPath, absolute);
    await rejection(() => extractZip(zipPath, join(dir.path, 'out')), DataError, /zip-slip/);
    assert.not.ok(existsSync(join(dir.path, 'out')));
  } finally {
    await dir.cleanup();
  }
});

test('a damaged entry fails its CRC check', async () => {
  const dir = await tempDir();
  try {
    const good = await zipBuffer({ 'a.txt': 'hello hello hello' });
    // yazl stores short text deflated; flip one byte of the compressed data after the local header.
    const damaged = Buffer.from(good);
    const dataStart = 30 + 'a.txt'.length;
    damaged[dataStart + 2] ^= 0xff;
    const zipPath = join(dir.path, 'bad.zip');
    await writeFile(zipPath, damaged);
    await rejection(() => extractZip(zipPath, join(dir.path, 'out')), DataError);
  } finally {
    await dir.cleanup();
  }
});

test('downloadFile: body shorter than Content-Length counts as a transient failure', async () => {
  const dir = await tempDir();
  try {
    const body = Buffer.alloc(10_000, 7);
    server.route('/short', (_request, response, hit) => {
      if (hit === 1) {
        response.writeHead(200, { 'content-length': body.length });
        response.end(body.subarray(0, 100)); // the server closes cleanly, early
        response.socket?.destroySoon();
      } else serve(body)({} as never, response, hit);
    });
    const file = join(dir.path, 'f.bin');
    const result = await downloadFile(`${server.url}/short`, file, fast);
    assert.is(result.attempts, 2);
    assert.ok((await readFile(file)).equals(body));
  } finally {
    await dir.cleanup();
  }
});

test('--force replaces only what osteo wrote: class folders, download.json, index, split and cache; other files stay', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const dest = join(dir.path, 'knee');
    await downloadKaggleDataset({ dest, apiUrl, env, http: fast });
    const record = JSON.parse(await readFile(join(dest, 'download.json'), 'utf8'));
    assert.is(record.dataset, `${kaggleDataset.owner}/${kaggleDataset.slug}`);
    assert.equal(record.counts, [2, 1, 3]);
    // The user's own files beside the dataset, and osteo's derived files from the old data.
    await writeFile(join(dest, 'notes.txt'), 'my notes');
    await mkdir(join(dest, 'analysis'));
    await writeFile(join(dest, 'analysis', 'result.csv'), 'a,b');
    await writeFile(join(dest, 'index.csv'), 'stale index');
    await writeFile(join(dest, 'Normal', 'stale.jpg'), 'from the old download');
    const again = await downloadKaggleDataset({ dest, apiUrl, env, http: fast, force: true });
    assert.is(again.skipped, false);
    assert.equal(again.counts, [2, 1, 3]);
    assert.equal((await readdir(dest)).sort(), ['Normal', 'Osteopenia', 'Osteoporosis', 'analysis', 'download.json', 'notes.txt']);
    assert.is(await readFile(join(dest, 'notes.txt'), 'utf8'), 'my notes');
    assert.is(await readFile(join(dest, 'analysis', 'result.csv'), 'utf8'), 'a,b');
    assert.not.ok(existsSync(join(dest, 'Normal', 'stale.jpg')));
    assert.equal(await readdir(dir.path), ['knee'], 'no staging folder left');
  } finally {
    await dir.cleanup();
  }
});

test('a folder osteo did not download into is refused (with or without --force) and left untouched; the message suggests no destructive flag', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const unrelated = join(dir.path, 'photos');
    await mkdir(unrelated);
    await writeFile(join(unrelated, 'holiday.jpg'), 'sun');
    for (const force of [false, true]) {
      await rejection(
        () => downloadKaggleDataset({ dest: unrelated, apiUrl, env, http: fast, force }),
        (error: Error) => error instanceof UserError && /osteo did not download.*choose another --dest/.test(error.message) && !error.message.includes('--force'),
      );
    }
    assert.equal(await readdir(unrelated), ['holiday.jpg']);
    // A dataset someone assembled by hand (class folders, no download.json): kept without --force, refused with it.
    const handMade = join(dir.path, 'curated');
    await mkdir(join(handMade, 'Normal'), { recursive: true });
    await writeFile(join(handMade, 'Normal', 'checked.png'), 'by hand');
    const logs: string[] = [];
    assert.is((await downloadKaggleDataset({ dest: handMade, apiUrl, env, http: fast, log: (line) => logs.push(line) })).skipped, true);
    assert.not.ok(logs.join('\n').includes('--force'), logs.join('\n'));
    await rejection(() => downloadKaggleDataset({ dest: handMade, apiUrl, env, http: fast, force: true }), UserError, /will not write over it/);
    assert.is(await readFile(join(handMade, 'Normal', 'checked.png'), 'utf8'), 'by hand');
    assert.is(server.requests.filter((r) => r.url === path).length, 0, 'nothing was downloaded');
  } finally {
    await dir.cleanup();
  }
});

test('too little space to extract is a user error before extraction, naming the folder and the sizes; nothing is left', async () => {
  const dir = await tempDir();
  try {
    const { apiUrl, path } = api();
    server.route(path, authorised((response) => serve(zip)({} as never, response, 1)));
    const dest = join(dir.path, 'knee');
    const nearlyFull = async () => ({ bavail: 1, bsize: 4 });
    await rejection(
      () => downloadKaggleDataset({ dest, apiUrl, env, http: fast, statfs: nearlyFull }),
      (error: Error) => error instanceof UserError && error.message.startsWith(`${dir.path}: `) && /are needed and only 0\.0 MiB are free/.test(error.message),
    );
    assert.equal(await readdir(dir.path), []);
  } finally {
    await dir.cleanup();
  }
});

test('bad --api-url and a file as --dest are user errors naming the value', async () => {
  const dir = await tempDir();
  try {
    await rejection(() => downloadKaggleDataset({ dest: join(dir.path, 'k'), apiUrl: 'kaggle.com/api', env, http: fast }), UserError, /^--api-url: 'kaggle.com\/api' is not a URL/);
    const file = join(dir.path, 'file');
    await writeFile(file, 'x');
    await rejection(() => downloadKaggleDataset({ dest: file, apiUrl: 'http://127.0.0.1:9', env, http: fast }), (error: Error) => error instanceof UserError && error.message.includes(`--dest ${file} is a file`));
    await rejection(
      () => downloadKaggleDataset({ dest: join(file, 'knee'), apiUrl: 'http://127.0.0.1:9', env, http: fast }),
      (error: Error) => error instanceof UserError && error.message.includes(file) && /a file where a folder is needed/.test(error.message),
    );
  } finally {
    await dir.cleanup();
  }
});

test.run();
