/**
 * The one option record of the DICOM window: how a DICOM file's values become gray levels, wherever
 * an image is read (`data index`, `data preview`, `train`, `eval`, `predict`). It is the text form
 * (`auto`, `file` or `C,W`) that readers.ts `parseDicomWindow` reads; a run records it in its
 * config.json, and eval and predict of that run use it unless the flag overrides it.
 */
import { z } from 'zod';
import { parseDicomWindow, type DicomWindow } from '../data/index.js';
import { OptionValues, applyFlags, optional, schemaOf, validateValues, type ConfigOf } from './options.js';

const expected = 'expected auto, file, or a centre and a width ≥ 1 as C,W (e.g. 2048,4096)';

const windowText = z.string({ error: expected }).refine((text) => parseDicomWindow(text) !== undefined, { error: expected });

export const dicomWindowOptions = {
  dicomWindow: optional(
    windowText,
    "how DICOM files become gray levels: auto (the file's first window or VOI LUT, else the image's min/max), file (the file's, else the whole stored range), or C,W (a centre and a width); default auto, and for eval and predict the window each run was trained with (docs/data.md, DICOM)",
    { flag: '--dicom-window <auto|file|C,W>' },
  ),
} as const;

export type DicomWindowConfig = ConfigOf<typeof dicomWindowOptions>;

const schema = schemaOf(dicomWindowOptions);

/** The window a command's --dicom-window flag gives (undefined when it was not given); errors name the flag. */
export function resolveDicomWindow(flags: Readonly<Record<string, unknown>>): DicomWindow | undefined {
  const values = new OptionValues(dicomWindowOptions);
  applyFlags(values, flags);
  const { dicomWindow } = validateValues(values, schema) as DicomWindowConfig;
  return dicomWindow === undefined ? undefined : parseDicomWindow(dicomWindow);
}
