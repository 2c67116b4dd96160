import { readFile } from 'node:fs/promises';

import type { ImageConfig, ImageManifest, Platform } from '../../types/oci/index.js';
import { formatReference, registryApiHost, type ImageReference } from '../reference.js';
import type { BlobStore } from '../store.js';
import { TokenCache } from './auth.js';
import { downloadBlob, downloadBlobs } from './blob.js';
import { RegistryClient } from './client.js';
import {
  DEFAULT_PLATFORM,
  fetchManifest,
  formatPlatform,
  ManifestError,
  normalizePlatform,
  selectPlatform,
} from './manifest.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry.js';

export interface PullOptions {
  /** linux/amd64 unless given. */
  platform?: { os: string; architecture: string; variant?: string };
  credentials?: { username: string; password: string };
  /** Registries (host[:port]) reached over plain HTTP; loopback always is. */
  insecureRegistries?: string[];
  /** Used instead of registry-1.docker.io for Docker Hub images: "https://mirror.example" or host[:port]. */
  registryMirror?: string;
  onProgress?: (e: { digest: string; bytes: number; total: number }) => void;
  /** Retries of 429, 5xx and broken connections; tests shorten the backoff. */
  retry?: RetryPolicy;
  /** Layers downloaded at once (3). */
  concurrency?: number;
  /** Debug lines: one per HTTP exchange and retry, credentials redacted. */
  log?: (line: string) => void;
}

export interface PulledLayer {
  digest: string;
  mediaType: string;
  size: number;
  path: string;
}

export interface PulledImage {
  reference: ImageReference;
  /** Digest of the image manifest for the platform (not of the index it was chosen from). */
  manifestDigest: string;
  /** Digest of the index or manifest list, when the reference named one. */
  indexDigest?: string;
  configDigest: string;
  config: ImageConfig;
  layers: PulledLayer[];
}

/**
 * Pulls an image into `store`: resolves the reference to the manifest for the platform, then
 * downloads (or finds already stored) its config and layers, each verified by digest.
 */
export async function pullImage(
  ref: ImageReference,
  store: BlobStore,
  options: PullOptions = {},
): Promise<PulledImage> {
  const platform = normalizePlatform(options.platform ?? DEFAULT_PLATFORM);
  const retry = options.retry ?? DEFAULT_RETRY_POLICY;
  const log = options.log ?? (() => {});
  const host = registryApiHost(ref, { mirror: options.registryMirror });
  const client = new RegistryClient({
    host,
    repository: ref.repository,
    credentials: options.credentials,
    insecureRegistries: [
      ...(options.insecureRegistries ?? []),
      ...plainHttpMirror(host, options.registryMirror),
    ],
    tokens: new TokenCache(),
    log,
  });
  const subject = formatReference(ref);

  const top = await fetchManifest(client, ref.digest ?? ref.tag ?? 'latest', subject, retry);
  let manifest: ImageManifest;
  let manifestDigest: string;
  let indexDigest: string | undefined;
  if (top.kind === 'index') {
    const entry = selectPlatform(top.index, platform, subject);
    const child = await fetchManifest(
      client,
      entry.digest,
      `${subject} (${formatPlatform(platform)})`,
      retry,
    );
    if (child.kind !== 'image') {
      throw new ManifestError(
        `the ${formatPlatform(platform)} entry of ${subject} is another index; nested indexes are not supported`,
      );
    }
    manifest = child.manifest;
    manifestDigest = child.digest;
    indexDigest = top.digest;
  } else {
    manifest = top.manifest;
    manifestDigest = top.digest;
  }

  const downloadOptions = { retry, onProgress: options.onProgress, onRetry: log };
  const configPath = await downloadBlob(client, manifest.config, store, downloadOptions);
  const config = parseImageConfig(await readFile(configPath), subject);
  if (top.kind === 'image') assertPlatform(config, platform, subject);

  const paths = await downloadBlobs(client, manifest.layers, store, {
    ...downloadOptions,
    concurrency: options.concurrency,
  });
  return {
    reference: ref,
    manifestDigest,
    indexDigest,
    configDigest: manifest.config.digest,
    config,
    layers: manifest.layers.map((layer, index) => ({
      digest: layer.digest,
      mediaType: layer.mediaType,
      size: layer.size,
      path: paths[index] as string,
    })),
  };
}

/** A mirror given as http://... is meant to be reached over plain HTTP. */
function plainHttpMirror(host: string, mirror: string | undefined): string[] {
  return mirror?.toLowerCase().startsWith('http://') ? [host] : [];
}

function parseImageConfig(bytes: Buffer, subject: string): ImageConfig {
  let config: unknown;
  try {
    config = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ManifestError(`the image config of ${subject} is not valid JSON`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ManifestError(`the image config of ${subject} is not a JSON object`);
  }
  return config as ImageConfig;
}

/** A single-platform image must still be for our platform: a VM cannot run another architecture's binaries. */
function assertPlatform(config: ImageConfig, wanted: Platform, subject: string): void {
  if (!config.os || !config.architecture) return;
  const actual = normalizePlatform({
    os: config.os,
    architecture: config.architecture,
    variant: config.variant,
  });
  if (actual.os !== wanted.os || actual.architecture !== wanted.architecture) {
    throw new ManifestError(
      `${subject} is an image for ${formatPlatform(actual)}, not ${formatPlatform(wanted)}`,
      { kind: 'NotFound' },
    );
  }
}
