/** Shared fixtures of the data tests: zips and a scripted HTTP server on 127.0.0.1. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import yazl from 'yazl';

export function zipBuffer(entries: Record<string, Buffer | string>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, content] of Object.entries(entries)) zip.addBuffer(Buffer.from(content), name);
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (chunk: Buffer) => chunks.push(chunk));
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    zip.outputStream.on('error', reject);
  });
}

export type Handler = (request: http.IncomingMessage, response: http.ServerResponse, hit: number) => void;

export interface TestServer {
  url: string;
  /** Requests seen, in order. */
  requests: { url: string; authorization?: string }[];
  route(path: string, handler: Handler): void;
  close(): Promise<void>;
}

/** A server whose behaviour per path is scripted by the test; `hit` counts requests to that path. */
export async function startServer(): Promise<TestServer> {
  const routes = new Map<string, Handler>();
  const hits = new Map<string, number>();
  const requests: TestServer['requests'] = [];
  const server = http.createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    requests.push({ url: path, authorization: request.headers.authorization });
    const hit = (hits.get(path) ?? 0) + 1;
    hits.set(path, hit);
    const handler = routes.get(path);
    if (handler === undefined) {
      response.writeHead(404).end('not found');
      return;
    }
    handler(request, response, hit);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    route: (path, handler) => routes.set(path, handler),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Serve `body` completely. */
export function serve(body: Buffer, status = 200): Handler {
  return (_request, response) => {
    response.writeHead(status, { 'content-type': 'application/zip', 'content-length': body.length });
    response.end(body);
  };
}

/** Announce the full length, send half, then reset the connection. */
export function resetMidBody(body: Buffer): Handler {
  return (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length });
    response.write(body.subarray(0, body.length >> 1), () => setTimeout(() => response.socket?.resetAndDestroy(), 20));
  };
}

