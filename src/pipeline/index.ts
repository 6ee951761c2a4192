/** pipeline: whole experiments composed from the rooms below — `osteo reproduce` (download → split → train each model → evaluate → export). */
export {
  reproduce,
  formatReproduceTable,
  checkAgainstPublished,
  publishedResults,
  publishedProtocolDefects,
  type ReproduceOptions,
  type ReproduceRow,
  type ReproduceResult,
} from './reproduce.js';
