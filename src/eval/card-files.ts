/** A model card's two files: model-card.json, the one source, and model-card.md, rendered from it. */
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/index.js';
import type { ModelCard } from './card.js';
import { renderModelCard } from './card-markdown.js';

export const cardFiles = ['model-card.json', 'model-card.md'] as const;

/** Both files into `dir`, each written atomically (the caller stages the folder they go into). */
export async function writeModelCardFiles(dir: string, card: ModelCard): Promise<string[]> {
  await writeJsonAtomic(join(dir, cardFiles[0]), card);
  await writeFileAtomic(join(dir, cardFiles[1]), renderModelCard(card));
  return [...cardFiles];
}
