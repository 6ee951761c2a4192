/**
 * Debian's dcmtk: the compressing tools (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv) that write the DICOM
 * reader's compressed fixtures, an encoder independent of the decoders osteo bundles.
 */
import { spawnSync } from 'node:child_process';
import type { Requirement } from './requirements.js';

export const dcmtkTools = ['dcmcjpeg', 'dcmcjpls', 'dcmcrle', 'dcmconv'] as const;

export const dcmtkRequirement: Requirement = {
  name: `dcmtk (${dcmtkTools.join(', ')})`,
  install: 'apt-get install --no-install-recommends dcmtk',
  probe() {
    for (const tool of dcmtkTools) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
      if (found.status !== 0 || found.stdout.trim() === '') return `no ${tool} on PATH`;
    }
    return null;
  },
};
