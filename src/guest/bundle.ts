import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type ErrorKind, HyperError } from '../errors.js';
import { ensureTools, GUEST_BUILD_TOOLS } from '../install/tools.js';
import { run } from '../process/run.js';
import { projectRoot } from '../project-root.js';
import type { GuestBundle } from '../types/guest-bundle.js';
import { findReleaseAsset } from './release.js';

export const BUNDLE_TOOL = 'hyper-guest';
/** The files whose content defines a bundle; their hash is its version. */
const RECIPE_FILES = [
  'build.sh',
  'init',
  'shutdown',
  'hyper-exec.c',
  'hyper-log.c',
  'hyper-connect.c',
  'hyper-relay.c',
  'hyper-reseed.c',
  'hyper-resume.c',
  'hyper-tools.c',
];

export class GuestBundleError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  override name = 'GuestBundleError';
}

/** sha256 over the recipe files, in a fixed order. */
export async function recipeHash(guestDir = path.join(projectRoot(), 'guest')): Promise<string> {
  const hash = createHash('sha256');
  for (const name of RECIPE_FILES) {
    hash.update(`${name}\0`);
    hash.update(await readFile(path.join(guestDir, name)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** tool-cache keys entries by semver; the recipe hash rides in the prerelease part. */
export function bundleCacheVersion(hash: string): string {
  return `1.0.0-${hash}`;
}

export function bundleAssetName(hash: string): string {
  return `hyper-guest-${hash}.tar.gz`;
}

/**
 * The kernel files a bundle may hold, preferred first: the ELF QEMU enters at
 * its PVH entry point, then the bzImage (kernels without one, and bundles
 * built before).
 */
const KERNEL_FILES = ['vmlinux', 'vmlinuz'];

async function kernelIn(dir: string): Promise<string | undefined> {
  for (const file of KERNEL_FILES) {
    if (await stat(path.join(dir, file)).catch(() => undefined)) return path.join(dir, file);
  }
  return undefined;
}

async function fromDir(dir: string, version: string): Promise<GuestBundle> {
  return {
    version,
    kernel: (await kernelIn(dir)) ?? path.join(dir, 'vmlinuz'),
    initrd: path.join(dir, 'initrd.img'),
    connect: path.join(dir, 'hyper-connect'),
  };
}

async function checkBundleDir(dir: string, hash: string | undefined, source: string): Promise<void> {
  if (!(await kernelIn(dir))) {
    throw new GuestBundleError(`guest bundle from ${source} has no kernel (${KERNEL_FILES.join(' or ')})`);
  }
  for (const file of ['initrd.img', 'hyper-connect', 'manifest.json']) {
    if (!(await stat(path.join(dir, file)).catch(() => undefined))) {
      throw new GuestBundleError(`guest bundle from ${source} has no ${file}`);
    }
  }
  if (hash === undefined) return;
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { recipe?: string };
  if (manifest.recipe !== hash) {
    throw new GuestBundleError(
      `guest bundle from ${source} was built from recipe ${manifest.recipe}, not ${hash}`,
    );
  }
}

/**
 * The variables @actions/tool-cache reads, for a front door to set where the
 * runner has not (outside Actions): the tool cache inside our cache dir. Pure.
 */
export function toolCacheEnv(cacheDir: string): { RUNNER_TOOL_CACHE: string; RUNNER_TEMP: string } {
  return { RUNNER_TOOL_CACHE: path.join(cacheDir, 'toolcache'), RUNNER_TEMP: os.tmpdir() };
}

export interface BundleOptions {
  cacheDir: string;
  log: (line: string) => void;
  /** owner/repo whose release assets may hold a prebuilt bundle. */
  releaseRepository?: string | undefined;
  releaseTag?: string | undefined;
  githubToken?: string | undefined;
  /** HYPER_GUEST_BUNDLE_DIR: a bundle to use as it is, instead of the recipe's. */
  dir?: string | undefined;
  /** HYPER_GUEST_BUNDLE_URL: where to download the bundle, `{hash}` replaced by the recipe hash. */
  urlTemplate?: string | undefined;
  /** GITHUB_API_URL, for the release lookup; github.com's when absent. */
  githubApiUrl?: string | undefined;
}

/**
 * The guest bundle for this recipe: HYPER_GUEST_BUNDLE_DIR if set, else the tool
 * cache, else a prebuilt release asset (HYPER_GUEST_BUNDLE_URL overrides its
 * URL), else built here by guest/build.sh from distro packages.
 */
export async function ensureGuestBundle(options: BundleOptions): Promise<GuestBundle> {
  const override = options.dir;
  if (override) {
    await checkBundleDir(override, undefined, `HYPER_GUEST_BUNDLE_DIR (${override})`);
    return fromDir(override, `dir:${override}`);
  }
  const hash = await recipeHash();
  const version = bundleCacheVersion(hash);
  const cached = findInToolCache(BUNDLE_TOOL, version);
  if (cached) return fromDir(cached, hash);
  const tc = await import('@actions/tool-cache');

  const url = await releaseUrl(hash, options).catch((error: unknown) => {
    options.log(`No prebuilt guest bundle (${(error as Error).message}); building one`);
    return undefined;
  });
  if (url) {
    let archive: string | undefined;
    let extracted: string | undefined;
    try {
      options.log(`Downloading guest bundle ${hash}`);
      archive = await tc.downloadTool(url);
      extracted = await tc.extractTar(archive);
      await checkBundleDir(extracted, hash, url);
      return fromDir(await tc.cacheDir(extracted, BUNDLE_TOOL, version), hash);
    } catch (error: unknown) {
      options.log(`Guest bundle download failed (${(error as Error).message}); building one`);
    } finally {
      // A download that did not check out leaves nothing in the runner's temp dir either.
      if (archive) await rm(archive, { force: true });
      if (extracted) await rm(extracted, { recursive: true, force: true });
    }
  }
  return buildLocally(hash, version, options);
}

/**
 * Where @actions/tool-cache keeps `tool` at the exact `version` for this
 * machine's arch, when it is there and complete: the two paths `tc.find`
 * checks for an exact version such as bundleCacheVersion's, without loading
 * tool-cache, whose HTTP client cost about 100 ms of every CLI start here.
 * tool-cache itself is loaded only to download or store a bundle. As
 * `tc.find` does, it refuses to guess without RUNNER_TOOL_CACHE.
 */
export function findInToolCache(tool: string, version: string, arch = os.arch()): string | undefined {
  const root = process.env.RUNNER_TOOL_CACHE;
  if (!root)
    throw new GuestBundleError('Expected RUNNER_TOOL_CACHE to be defined (the tool cache directory)');
  const dir = path.join(root, tool, version, arch);
  return existsSync(dir) && existsSync(`${dir}.complete`) ? dir : undefined;
}

async function releaseUrl(hash: string, options: BundleOptions): Promise<string | undefined> {
  const template = options.urlTemplate;
  if (template) return template.replace('{hash}', hash);
  if (!options.releaseRepository || !options.releaseTag) return undefined;
  return findReleaseAsset({
    repository: options.releaseRepository,
    tag: options.releaseTag,
    assetName: bundleAssetName(hash),
    token: options.githubToken,
    apiUrl: options.githubApiUrl,
  });
}

async function buildLocally(hash: string, version: string, options: BundleOptions): Promise<GuestBundle> {
  const tc = await import('@actions/tool-cache');
  options.log(`Building guest bundle ${hash} from distro packages`);
  await ensureTools(GUEST_BUILD_TOOLS, options.log);
  const out = await mkdtemp(path.join(os.tmpdir(), 'hyper-guest-'));
  try {
    await run({
      program: 'bash',
      args: [path.join(projectRoot(), 'guest', 'build.sh'), out],
      env: { HYPER_GUEST_RECIPE_HASH: hash },
    });
    await checkBundleDir(out, hash, 'guest/build.sh');
    const dir = await tc.cacheDir(out, BUNDLE_TOOL, version);
    return fromDir(dir, hash);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
