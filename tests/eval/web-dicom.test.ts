/**
 * A DICOM file in the web viewer: Debian's headless Chromium opens an export of two runs (one records
 * the window auto, the other 2000,800) with `?image=` a DICOM fixture written by pydicom or dcmtk,
 * and the page, decoding it with the data room's own DICOM reader and codecs bundled in, gives each
 * model's and the soft vote's probabilities of `osteo predict` (predictImages) to 1e-3: an 8-bit
 * film, a deep film (float pixels, float resize), every compressed syntax's decoder, a deflated and a
 * big-endian data set. #result
 * names the file and never a DICOM tag value; a structured report is refused in the page as in Node.
 */
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { predictImages } from '../../src/eval/predict.js';
import { serveDirectory } from '../../src/eval/web-serve.js';
import { exportWeb } from '../../src/eval/web-export.js';
import { dicomFixtures, dicomTools } from '../fixtures/dicom/fixtures.js';
import { chromiumPath, chromiumRequirement } from '../helpers/chromium.js';
import { requirementStatus, testWith, type Requirement } from '../helpers/requirements.js';
import { tempDir } from '../helpers/temp.js';
import { writeRunFixture } from './fixtures.js';

const chromiumAndDicomTools: Requirement = {
  name: `${chromiumRequirement.name}; ${dicomTools.name}`,
  install: `${chromiumRequirement.install} && ${dicomTools.install}`,
  probe: () => requirementStatus(chromiumRequirement) ?? requirementStatus(dicomTools),
};

const patientValues = /Phantom\^Knee|Phantom Knee|PID-0001|19500101/;

interface PageResult {
  image: string;
  probabilities?: number[];
  models?: Record<string, { probabilities: number[] }>;
  error?: string;
}

const largest = (a: number[], b: number[]) => Math.max(...a.map((p, c) => Math.abs(p - b[c]!)));

testWith(chromiumAndDicomTools, test, "a .dcm in the page: each model under its run's window gives osteo predict's probabilities to 1e-3, every decoder runs in the page, #result shows no tag value", async () => {
  const dir = await tempDir('osteo-web-dicom-');
  let browser: Browser | undefined;
  try {
    const backend = await useBackend('wasm');
    const plain = await writeRunFixture(join(dir.path, 'plain'), 'resnet18', { imageSize: 32, seed: 4 });
    const windowed = await writeRunFixture(join(dir.path, 'windowed'), 'resnet18', { imageSize: 32, seed: 5 });
    const configFile = join(windowed.dir, 'config.json');
    await writeFile(configFile, JSON.stringify({ ...(JSON.parse(await readFile(configFile, 'utf8')) as object), dicomWindow: '2000,800' }));
    const runs = [plain.dir, windowed.dir];
    const site = join(dir.path, 'site');
    await exportWeb({ backend, runs, outDir: site });
    const { dir: fixtures } = dicomFixtures();
    const films = ['u8-mono2.dcm', 'u12-mono2-window.dcm', 's12-mono1-sigmoid.dcm', 'jpeg-baseline.dcm', 'jpeg-lossless-70.dcm', 'jpeg-ls.dcm', 'rle.dcm', 'jpeg2000.dcm', 'deflated.dcm', 'big-endian.dcm'];
    for (const name of [...films, 'bad-sr.dcm']) await copyFile(join(fixtures, name), join(site, name));
    const served = await serveDirectory(site, { port: 0 });
    browser = await puppeteer.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-3d-apis'] });
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    tab.on('pageerror', (error) => errors.push(String(error)));
    tab.on('requestfailed', (request) => errors.push(`request failed: ${request.url()}`));
    const open = async (name: string): Promise<{ result: PageResult; text: string }> => {
      await tab.goto(`${served.url}index.html?image=${name}`);
      await tab.waitForSelector('#result[data-status]', { timeout: 180_000 });
      const text = (await tab.$eval('#result', (element) => element.textContent)) ?? 'null';
      return { result: JSON.parse(text) as PageResult, text };
    };
    try {
      const expected = await predictImages({ backend, images: films.map((name) => join(site, name)), runs });
      assert.equal(expected.failed, []);
      const lines: string[] = [];
      for (const [i, name] of films.entries()) {
        const { result, text } = await open(name);
        assert.is(result.error, undefined, `${name}: ${result.error}`);
        assert.not.match(text, patientValues, `${name}: no tag value in #result`);
        const reference = expected.images[i]!;
        assert.ok(largest(result.probabilities!, reference.probabilities) <= 1e-3, `${name}: page ${result.probabilities} vs predict ${reference.probabilities}`);
        for (const [model, { probabilities }] of Object.entries(reference.models)) {
          const difference = largest(result.models![model]!.probabilities, probabilities);
          assert.ok(difference <= 1e-3, `${name}/${model}: page ${result.models![model]!.probabilities} vs predict ${probabilities}`);
          lines.push(`${name} ${model}: max |Δp| ${difference.toExponential(2)}`);
        }
      }
      console.log(lines.join('\n'));
      assert.equal(errors, [], 'no console errors');
      // The page matched predict under the windowed run's own window, which is not auto: the comparison sees the window.
      const underWindow = Object.values(expected.images[1]!.models)[1]!.probabilities;
      const underAuto = (await predictImages({ backend, images: [join(site, films[1]!)], runs: [windowed.dir], dicomWindow: 'auto' })).images[0]!.probabilities;
      assert.ok(largest(underAuto, underWindow) > 1e-5, "the windowed run's window changes its input");
      const refused = await open('bad-sr.dcm');
      assert.match(refused.result.error ?? '', /a structured report/);
      assert.not.match(refused.text, patientValues);
    } finally {
      await served.close();
    }
  } finally {
    await browser?.close();
    await rm(dir.path, { recursive: true, force: true });
  }
});

test.run();
