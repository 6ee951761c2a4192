/**
 * util: the lowest room — errors, atomic file writes, HTTP downloads with retries, progress bars,
 * seeded random numbers and seed derivation, records of the files osteo wrote (path and hash), CSV reading and writing, printable text, bounded
 * concurrency, the version. It imports nothing from the project.
 */
export { UserError, DataError, isUserFacing, errorMessage, environmentUserError } from './errors.js';
export { temporaryPathFor, replaceAtomically, writeFileAtomic, writeJsonAtomic, createFileExclusive, checkWritableFolder, stageFolder, replaceFolder, replaceEntries, recoverStagedFolder, processAlive, type StatFs, type StagedFolder } from './fs.js';
export { downloadFile, parseHttpUrl, isRetryable, HttpStatusError, type DownloadOptions, type DownloadResult } from './http.js';
export { byteProgress, countProgress, silentProgress, formatBytes, formatDuration, type ProgressSink } from './progress.js';
export { createRng, restoreRng, deriveSeed, labelSeed, mix32, uniform, randomInt, normal, gamma, beta, shuffleInPlace, type Rng, type RngState } from './rng.js';
export { formatCsv, parseCsvRecords } from './csv.js';
export { printable, printableLines } from './text.js';
export { sha256Of, sha256File, emptyOwnedRecord, readOwnedRecord, writeOwnedRecord, isRecorded, listTree, unrecordedFiles, listSome, type OwnedRecord } from './owned.js';
export { mapLimit } from './concurrency.js';
export { osteoVersion } from './version.js';
