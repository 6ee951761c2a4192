/** Paths as an export folder or a model card names them. */
import { relative, resolve, sep } from 'node:path';

/** `file` as seen from the export folder `dir`: a shared export names no machine's folders (`/`-separated). */
export function pathFromExport(dir: string, file: string): string {
  return relative(resolve(dir), resolve(file)).split(sep).join('/') || '.';
}
