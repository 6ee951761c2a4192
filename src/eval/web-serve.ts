/**
 * `osteo serve DIR [--port N]`: a web export (or any static folder) over HTTP on 127.0.0.1 only, for
 * a local look. Why hand-written on node:http: GET/HEAD of regular files in one folder is short, and
 * a static-server package would bring options (directory listings, other interfaces) to switch off.
 * What it serves: only requests that name this server as their Host, only regular files whose real
 * path lies inside the folder's real path (a symbolic link out of the folder is refused), and a
 * request that fails (a file unreadable, or deleted meanwhile) is answered and logged, never fatal.
 */
import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { UserError, errorMessage, printable } from '../util/index.js';

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

export interface ServeOptions {
  /** 0: any free port (default 8080). */
  port?: number;
  /** One line per request that failed on this side (default: stderr). */
  log?: (line: string) => void;
  /** Opens a served file read-only (tests substitute one that fails). */
  openFile?: (path: string) => Promise<FileHandle>;
}

/**
 * The Host a request must name: this server's address or `localhost`, with its port. A page on
 * another site that rebinds its own name to 127.0.0.1 (DNS rebinding) still sends that name, so it
 * is turned away before it can read anything.
 */
export function allowedHost(host: string | undefined, port: number): boolean {
  if (host === undefined) return false;
  const name = host.toLowerCase();
  const hosts = [serveHost, 'localhost'];
  return hosts.some((h) => name === `${h}:${port}` || (port === 80 && name === h));
}

/** The status for a file-system error: absent → 404, not ours to read → 403, anything else → 500. */
function statusOf(error: unknown): number {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENAMETOOLONG') return 404;
  if (code === 'EACCES' || code === 'EPERM') return 403;
  return 500;
}

/** What one served chunk holds at most before the response starts (a read error before it is still a 500). */
const firstChunkBytes = 64 * 1024;

/**
 * Answer one GET/HEAD with a regular file whose real path (every symbolic link followed) is inside
 * the real root. The file is opened once and everything after the open reads that handle, so a
 * rename or link swapped in between cannot change what is sent. No failure escapes: it is an
 * answer (403/404/500) and, for failures on this side, one log line.
 */
async function answer(request: IncomingMessage, response: ServerResponse, realRoot: string, port: number, options: Required<Pick<ServeOptions, 'log' | 'openFile'>>): Promise<void> {
  const fail = (status: number, why?: string) => {
    if (why !== undefined) options.log(`osteo serve: ${request.method} ${printable(request.url ?? '')}: ${status}: ${printable(why)}`);
    if (!response.headersSent) response.writeHead(status).end();
    else response.destroy();
  };
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  if (!allowedHost(request.headers.host, port)) return fail(421);
  const requested = resolveRequestPath(realRoot, request.url ?? '/');
  if (requested === null) return fail(403);
  let file: string;
  try {
    file = await realpath(requested);
    // A FIFO would block the open below forever: only a regular file is opened.
    if (!(await stat(file)).isFile()) return fail(404);
  } catch (error) {
    return fail(statusOf(error), statusOf(error) === 500 ? errorMessage(error) : undefined);
  }
  if (file !== realRoot && !file.startsWith(realRoot + sep)) return fail(403);
  let handle: FileHandle;
  try {
    handle = await options.openFile(file);
  } catch (error) {
    return fail(statusOf(error), errorMessage(error));
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return fail(404);
    const first = Buffer.alloc(Math.min(info.size, firstChunkBytes));
    const { bytesRead } = await handle.read(first, 0, first.length, 0);
    response.writeHead(200, { 'content-type': contentTypes[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': info.size, 'cache-control': 'no-cache' });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    response.write(first.subarray(0, bytesRead));
    // The rest: a read error now can only cut the response short (its length then does not match).
    await pipeline(handle.createReadStream({ start: bytesRead, autoClose: false }), response);
  } catch (error) {
    // A client that goes away mid-answer is not a failure worth a line.
    if ((error as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') return;
    fail(500, errorMessage(error));
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Serve `dir` on 127.0.0.1:`port` (0: any free port) until close(). */
export async function serveDirectory(dir: string, options: ServeOptions = {}): Promise<ServedDirectory> {
  const info = await stat(resolve(dir)).catch(() => null);
  if (!info?.isDirectory()) throw new UserError(`${dir} is not a folder: give the --out folder of osteo export --format web`);
  // Symbolic links are judged by where they lead: the root's own real path is what files must be inside.
  const realRoot = await realpath(resolve(dir));
  const port = options.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port ${port} is not a port number (0–65535)`);
  const handlers = {
    log: options.log ?? ((line: string) => process.stderr.write(`${line}\n`)),
    // O_NOFOLLOW: the real path's last component cannot have become a link since it was resolved.
    openFile: options.openFile ?? ((path: string) => open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)),
  };
  let bound = port;
  const server = createServer((request, response) => {
    answer(request, response, realRoot, bound, handlers).catch((error: unknown) => {
      handlers.log(`osteo serve: ${request.method} ${printable(request.url ?? '')}: 500: ${printable(errorMessage(error))}`);
      if (!response.headersSent) response.writeHead(500).end();
      else response.destroy();
    });
  });
  await new Promise<void>((done, fail) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      fail(error.code === 'EADDRINUSE' ? new UserError(`port ${port} on ${serveHost} is in use: choose another with --port`) : error),
    );
    server.listen(port, serveHost, done);
  });
  bound = (server.address() as { port: number }).port;
  return {
    url: `http://${serveHost}:${bound}/`,
    port: bound,
    server,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
