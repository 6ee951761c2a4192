/**
 * `osteo serve DIR [--port N]`: a web export (or any static folder) over HTTP on 127.0.0.1 only, for
 * a local look. Why hand-written on node:http: GET/HEAD of files in one folder is ~50 lines, and a
 * static-server package would bring options (directory listings, other interfaces) to switch off.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { UserError } from '../util/index.js';

/** Never another interface: the page is for the person at this machine. */
export const serveHost = '127.0.0.1';

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.css': 'text/css; charset=utf-8',
};

export interface ServedDirectory {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** The file under `root` that a request path names, or null when it would leave `root`. */
export function resolveRequestPath(root: string, urlPath: string): string | null {
  let path: string;
  try {
    path = decodeURIComponent(urlPath.split('?')[0]!.split('#')[0]!);
  } catch {
    return null;
  }
  if (path.includes('\0')) return null;
  const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`);
  return file === root || file.startsWith(root + sep) ? file : null;
}

/** Serve `dir` on 127.0.0.1:`port` (0: any free port) until close(). */
export async function serveDirectory(dir: string, options: { port?: number } = {}): Promise<ServedDirectory> {
  const root = resolve(dir);
  const info = await stat(root).catch(() => null);
  if (!info?.isDirectory()) throw new UserError(`${dir} is not a folder: give the --out folder of osteo export --format web`);
  const port = options.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port ${port} is not a port number (0–65535)`);
  const server = createServer((request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const file = resolveRequestPath(root, request.url ?? '/');
    if (file === null) {
      response.writeHead(403).end();
      return;
    }
    stat(file).then(
      (found) => {
        if (!found.isFile()) {
          response.writeHead(404).end();
          return;
        }
        response.writeHead(200, { 'content-type': contentTypes[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': found.size, 'cache-control': 'no-cache' });
        if (request.method === 'HEAD') response.end();
        else createReadStream(file).pipe(response);
      },
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((done, fail) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      fail(error.code === 'EADDRINUSE' ? new UserError(`port ${port} on ${serveHost} is in use: choose another with --port`) : error),
    );
    server.listen(port, serveHost, done);
  });
  const bound = (server.address() as { port: number }).port;
  return {
    url: `http://${serveHost}:${bound}/`,
    port: bound,
    server,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
