import { cp, mkdtemp, open, readdir, readFile, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { readOciLayout } from '../../../src/images/oci-layout.js';
import { ensureRootfs } from '../../../src/images/rootfs.js';
import { busyboxLayout } from '../../support/fixtures.js';

// A layout's layer blobs are hashed only when a root filesystem is built from
// them, so `hyper run` of a cached image does not re-read them; a corrupt one
// is still refused before anything is unpacked.
let work: string;
let layout: string;
let layerFile: string;

beforeEach(async () => {
  work = await mkdtemp('/tmp/hyper-layout-');
  layout = path.join(work, 'layout');
  await cp(await busyboxLayout(), layout, { recursive: true });
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const blobs = path.join(layout, 'blobs', 'sha256');
  const manifest = JSON.parse(await readFile(path.join(blobs, index.manifests[0].digest.slice(7)), 'utf8'));
  layerFile = path.join(blobs, manifest.layers[0].digest.slice(7));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

test('a layer with the right size but the wrong bytes is refused when the rootfs is built, and nothing is cached', async () => {
  const handle = await open(layerFile, 'r+');
  await handle.write(Buffer.from([0x42]), 0, 1, 100);
  await handle.close();
  const image = await readOciLayout(`oci:${layout}`);
  const cache = path.join(work, 'cache');
  await expect(ensureRootfs(image, cache)).rejects.toThrow(
    /blob sha256:[0-9a-f]{64} does not match its digest/,
  );
  expect(await readdir(path.join(cache, 'rootfs', 'v1')).catch(() => [])).toEqual([]);
});

test('a layer of the wrong size is refused at once', async () => {
  await truncate(layerFile, 10);
  await expect(readOciLayout(`oci:${layout}`)).rejects.toThrow(/has 10 bytes, its descriptor says \d+/);
});
