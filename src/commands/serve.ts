import type { Command } from 'commander';
import { UserError } from '../util/index.js';
import { serveDirectory } from '../eval/index.js';

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UserError(`--port ${value} is not a port number (0–65535)`);
  return port;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a folder (the --out of export --format web) on 127.0.0.1 for a local look; Ctrl-C stops it')
    .argument('<dir>', 'folder to serve')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', parsePort, 8080)
    .action(async (dir: string, options: { port: number }) => {
      const served = await serveDirectory(dir, { port: options.port });
      console.log(`serving ${dir} at ${served.url} (127.0.0.1 only; Ctrl-C to stop)`);
      // Runs until the process is interrupted: the server keeps the event loop alive.
      await new Promise<void>((done) => served.server.once('close', done));
    });
}
