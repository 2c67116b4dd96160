import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rename, rm, stat, writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { cacheDir } from '../../src/lifecycle/dirs.js';

const BUILDER = path.resolve('test/fixtures/build-busybox-image.sh');

/**
 * The busybox httpd OCI layout, built once per builder version and kept in
 * the cache dir, so test runs after the first reuse it.
 */
export async function busyboxLayout(): Promise<string> {
  const hash = createHash('sha256')
    .update(await readFile(BUILDER))
    .digest('hex')
    .slice(0, 12);
  const target = path.join(cacheDir(), 'fixtures', `busybox-httpd-${hash}`);
  if (await stat(path.join(target, 'index.json')).catch(() => undefined)) return target;
  await mkdir(path.dirname(target), { recursive: true });
  const work = await mkdtemp(`${target}.tmp-`);
  try {
    await execa('bash', [BUILDER, work]);
    await rename(work, target).catch(async (error: unknown) => {
      // Another test file built it first; theirs is as good as ours.
      if (!(await stat(target).catch(() => undefined))) throw error;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return target;
}

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A copy of a single-image layout whose image config has been changed by `edit`. */
export async function variantLayout(
  source: string,
  edit: (config: Record<string, unknown>) => void,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-variant-'));
  await cp(source, dir, { recursive: true });
  const blob = (digest: string): string => path.join(dir, 'blobs', 'sha256', digest.replace('sha256:', ''));
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
  const manifestDescriptor = index.manifests[0];
  const manifest = JSON.parse(await readFile(blob(manifestDescriptor.digest), 'utf8'));
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  edit(config);
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: `sha256:${sha256(configBytes)}`, size: configBytes.length };
  await writeFile(blob(manifest.config.digest), configBytes);
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  index.manifests[0] = {
    ...manifestDescriptor,
    digest: `sha256:${sha256(manifestBytes)}`,
    size: manifestBytes.length,
  };
  await writeFile(blob(index.manifests[0].digest), manifestBytes);
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
