import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rename, rm, stat, writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { cacheDir } from './dirs.js';

const BUILDER = path.resolve('test/fixtures/build-busybox-image.sh');
const SERVICE_BUILDER = path.resolve('test/fixtures/build-service-images.sh');
const PG_ENTRYPOINT = path.resolve('test/fixtures/pg-entrypoint.sh');
const OFFICIAL_ENTRYPOINTS = ['postgres', 'redis'].map((name) =>
  path.resolve(`test/fixtures/official/${name}-entrypoint.sh`),
);

/**
 * The busybox httpd OCI layout, built once per builder version and kept in
 * the cache dir, so test runs after the first reuse it.
 */
export async function busyboxLayout(): Promise<string> {
  return cachedFixture('busybox-httpd', [BUILDER], 'index.json');
}

const NEWER_QEMU = path.resolve('test/fixtures/fetch-newer-qemu.sh');

/**
 * A QEMU newer than the host's (bookworm-backports' 10.0, unpacked into the
 * cache dir once): its qemu-system-x86_64.
 */
export async function newerQemu(): Promise<string> {
  return path.join(
    await cachedFixture('qemu-backports', [NEWER_QEMU], 'usr/bin/qemu-system-x86_64'),
    'usr/bin/qemu-system-x86_64',
  );
}

/** Debian's docker CLI (scripts/install-host-deps), which the docker-cli image carries. */
const DOCKER_CLI = '/usr/bin/docker';

/**
 * The busybox image with the docker CLI in it, laid out as Docker Hub's
 * docker:cli is (the client at /usr/local/bin/docker, a shell as the
 * command): what a job container that drives Docker looks like. The CLI is
 * the host's Debian build, with the C library it links against.
 */
export async function dockerCliLayout(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of [BUILDER, DOCKER_CLI]) hash.update(await readFile(file));
  const target = path.join(cacheDir(), 'fixtures', `docker-cli-${hash.digest('hex').slice(0, 12)}`);
  if (await stat(path.join(target, 'index.json')).catch(() => undefined)) return target;
  const work = await mkdtemp(`${target}.tmp-`);
  try {
    await cp(await busyboxLayout(), work, { recursive: true });
    const root = path.join(work, 'rootfs');
    await mkdir(path.join(root, 'usr/local/bin'), { recursive: true });
    await cp(DOCKER_CLI, path.join(root, 'usr/local/bin/docker'));
    // What the CLI links against: the paths ldd prints, copied to the same paths.
    const { stdout } = await execa('ldd', [DOCKER_CLI]);
    for (const library of stdout.matchAll(/(\/\S+\.so[.\d]*)/g)) {
      const file = library[1] as string;
      await mkdir(path.join(root, path.dirname(file)), { recursive: true });
      await cp(file, path.join(root, file), { dereference: true });
    }
    const layer = path.join(work, 'layer.tar');
    await execa('tar', [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-C',
      root,
      '-cf',
      layer,
      '.',
    ]);
    const tar = await readFile(layer);
    const gzip = (await execa('gzip', ['-n', '-1', '-c', layer], { encoding: 'buffer' })).stdout as Buffer;
    await rm(root, { recursive: true });
    await rm(layer);
    await editLayout(work, {
      config: (config) => {
        const run = config.config as Record<string, unknown>;
        run.Entrypoint = null;
        run.Cmd = ['sh'];
        run.Env = ['PATH=/usr/local/bin:/bin'];
        run.WorkingDir = '/';
        delete run.ExposedPorts;
      },
      addLayers: [{ gzip, diffId: `sha256:${sha256(tar)}` }],
    });
    await rename(work, target).catch(async (error: unknown) => {
      if (!(await stat(target).catch(() => undefined))) throw error;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return target;
}

export interface ServiceImageLayouts {
  /** redis-server as the redis user, with a healthcheck. */
  redis: string;
  /** postgres with trust authentication as the postgres user, with a healthcheck. */
  postgres: string;
  /** Laid out like Docker Hub's redis: a root entrypoint that steps down with gosu, uid 999, VOLUME /data. */
  redisOfficial: string;
  /** Laid out like Docker Hub's postgres: POSTGRES_PASSWORD/USER/DB, /docker-entrypoint-initdb.d, uid 999. */
  postgresOfficial: string;
}

/** OCI layouts built from the host distro's packages (debootstrap), sharing one layer. */
export async function serviceImageLayouts(): Promise<ServiceImageLayouts> {
  const dir = await cachedFixture(
    'service-images',
    [SERVICE_BUILDER, PG_ENTRYPOINT, ...OFFICIAL_ENTRYPOINTS],
    'postgres-official/index.json',
  );
  return {
    redis: path.join(dir, 'redis'),
    postgres: path.join(dir, 'postgres'),
    redisOfficial: path.join(dir, 'redis-official'),
    postgresOfficial: path.join(dir, 'postgres-official'),
  };
}

/**
 * Runs the first builder into a temp dir beside the cache entry and renames it
 * into place; keyed by the content of every file that defines the fixture.
 */
async function cachedFixture(name: string, builders: string[], marker: string): Promise<string> {
  const hash = createHash('sha256');
  for (const file of builders) hash.update(await readFile(file));
  const target = path.join(cacheDir(), 'fixtures', `${name}-${hash.digest('hex').slice(0, 12)}`);
  if (await stat(path.join(target, marker)).catch(() => undefined)) return target;
  await mkdir(path.dirname(target), { recursive: true });
  const work = await mkdtemp(`${target}.tmp-`);
  try {
    await execa('bash', [builders[0] as string, work]);
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

interface LayoutEdit {
  /** Changes the image config in place. */
  config?: (config: Record<string, unknown>) => void;
  /** Gzip layer blobs to append, each with the sha256 digest of its uncompressed tar (the diff id). */
  addLayers?: { gzip: Buffer; diffId: string }[];
}

/**
 * Rewrites the single image of an OCI layout in place: edits its config and
 * appends layers, then stores the new config and manifest by digest and points
 * index.json at them.
 */
export async function editLayout(dir: string, edit: LayoutEdit): Promise<void> {
  const blob = (digest: string): string => path.join(dir, 'blobs', 'sha256', digest.replace('sha256:', ''));
  const store = async (bytes: Buffer): Promise<string> => {
    const digest = `sha256:${sha256(bytes)}`;
    await writeFile(blob(digest), bytes);
    return digest;
  };
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  edit.config?.(config);
  for (const layer of edit.addLayers ?? []) {
    config.rootfs.diff_ids.push(layer.diffId);
    const digest = await store(layer.gzip);
    manifest.layers.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest,
      size: layer.gzip.length,
    });
  }
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: await store(configBytes), size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  index.manifests[0] = {
    ...index.manifests[0],
    digest: await store(manifestBytes),
    size: manifestBytes.length,
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
}

/** A copy of a single-image layout whose image config has been changed by `edit`. */
export async function variantLayout(
  source: string,
  edit: (config: Record<string, unknown>) => void,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-variant-'));
  await cp(source, dir, { recursive: true });
  await editLayout(dir, { config: edit });
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Appends a gzip layer made by GNU tar from `dir` (with `tarArgs`, e.g.
 * owners) to a single-image OCI layout; the tar is staged beside the layout.
 */
export async function addDirLayer(layout: string, dir: string, tarArgs: string[] = []): Promise<void> {
  const tarFile = `${layout}.layer-${sha256(Buffer.from(dir))}.tar`;
  try {
    await execa('tar', [
      '--sort=name',
      '--mtime=@0',
      '--numeric-owner',
      ...tarArgs,
      '-C',
      dir,
      '-cf',
      tarFile,
      '.',
    ]);
    const { stdout } = await execa('gzip', ['-n', '-c', tarFile], { encoding: 'buffer' });
    await editLayout(layout, {
      addLayers: [{ gzip: Buffer.from(stdout), diffId: `sha256:${sha256(await readFile(tarFile))}` }],
    });
  } finally {
    await rm(tarFile, { force: true });
  }
}
