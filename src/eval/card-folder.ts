/**
 * `osteo card --run R… [--eval REPORT…] [--out DIR]`: a model card written alone into a folder
 * (default `card-<run names>` beside the first run). The folder is recorded as an export folder is
 * (.osteo-export.json), so writing the card again replaces only the card osteo wrote there, and a
 * model-card.md of anyone else's is refused.
 */
import { buildModelCard, type CardOptions, type ModelCard } from './card.js';
import { cardFiles, writeModelCardFiles } from './card-files.js';
import { runSetFolder } from './evaluate.js';
import { writeFilesStaged } from './export.js';

export interface CardFolderOptions extends Omit<CardOptions, 'dir' | 'export'> {
  /** Default: card-<run names> beside the first run. */
  outDir?: string;
}

export async function writeModelCard(options: CardFolderOptions): Promise<{ dir: string; files: string[]; card: ModelCard }> {
  const dir = options.outDir ?? runSetFolder('card', options.runs, options.checkpoint);
  let card: ModelCard | undefined;
  const files = await writeFilesStaged(dir, cardFiles, async (staging) => {
    card = await buildModelCard({ ...options, dir });
    await writeModelCardFiles(staging, card);
  });
  return { dir, files, card: card! };
}
