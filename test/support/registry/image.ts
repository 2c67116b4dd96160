/**
 * Small OCI images built in-test: a config JSON and gzip layers made with node-tar, a manifest,
 * and indexes of several of them (with an attestation entry, as BuildKit writes).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { create as createTar } from 'tar';

import type {
  Descriptor,
  ImageConfig,
  ImageIndex,
  ImageManifest,
  Platform,
} from '../../../src/types/oci/index.js';
import { DockerReferenceTypeAnnotation, MediaType } from '../../../src/types/oci/index.js';

export interface TestBlob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export function blobOf(bytes: Buffer, mediaType: string): TestBlob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

export function descriptorOf(blob: TestBlob, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size, ...extra };
}

export interface TestImage {
  platform: Platform;
  config: TestBlob;
  layers: TestBlob[];
  /** The manifest, as bytes (its digest is what the registry stores). */
  manifest: TestBlob;
}

export interface TestImageOptions {
  platform?: Platform;
  /** Paths in the layer (relative, "/"-separated) and their content. */
  files?: Record<string, string | Buffer>;
  /** Several layers, each given as its files; replaces `files`. */
  layers?: Record<string, string | Buffer>[];
  env?: string[];
  cmd?: string[];
  /** Docker's media types instead of OCI's. */
  docker?: boolean;
}

/** A one-layer image unless `layers` says otherwise. Everything but random file content is deterministic. */
export async function buildTestImage(options: TestImageOptions = {}): Promise<TestImage> {
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const layerFiles = options.layers ?? [
    options.files ?? { 'etc/hyper-test': `built for ${platform.os}/${platform.architecture}\n` },
  ];
  const tars = await Promise.all(layerFiles.map(tarOf));
  const layerType = options.docker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip;
  const layers = tars.map((tar) => blobOf(gzipSync(tar), layerType));

  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: options.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: options.cmd ?? ['/bin/sh'],
      WorkingDir: '/',
      ExposedPorts: { '6379/tcp': {} },
      Labels: { 'org.opencontainers.image.title': 'hyper-services test image' },
    },
    rootfs: { type: 'layers', diff_ids: tars.map(sha256) },
    history: [{ created_by: 'hyper-services test support' }],
  };
  const configBlob = blobOf(
    Buffer.from(JSON.stringify(config)),
    options.docker ? MediaType.DockerConfig : MediaType.OciConfig,
  );

  const manifestType = options.docker ? MediaType.DockerManifest : MediaType.OciManifest;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: manifestType,
    config: descriptorOf(configBlob),
    layers: layers.map((layer) => descriptorOf(layer)),
  };
  return {
    platform,
    config: configBlob,
    layers,
    manifest: blobOf(Buffer.from(JSON.stringify(manifest)), manifestType),
  };
}

/**
 * An attestation manifest as BuildKit attaches one to `image`: an in-toto layer, listed in the
 * index as platform unknown/unknown with the vnd.docker.reference.* annotations.
 */
export function buildAttestation(image: TestImage): {
  manifest: TestBlob;
  blobs: TestBlob[];
  entry: Descriptor;
} {
  const statement = blobOf(
    Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v0.1', subject: [] })),
    'application/vnd.in-toto+json',
  );
  const config = blobOf(
    Buffer.from('{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}'),
    MediaType.OciConfig,
  );
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: descriptorOf(config),
    layers: [
      descriptorOf(statement, { annotations: { 'in-toto.io/predicate-type': 'https://spdx.dev/Document' } }),
    ],
  };
  const manifestBlob = blobOf(Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
  return {
    manifest: manifestBlob,
    blobs: [config, statement],
    entry: descriptorOf(manifestBlob, {
      platform: { os: 'unknown', architecture: 'unknown' },
      annotations: {
        [DockerReferenceTypeAnnotation]: 'attestation-manifest',
        'vnd.docker.reference.digest': image.manifest.digest,
      },
    }),
  };
}

/** An OCI index of `images`, each entry carrying its platform, plus optional extra entries. */
export function buildIndex(images: TestImage[], extraEntries: Descriptor[] = []): TestBlob {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      ...images.map((image) => descriptorOf(image.manifest, { platform: image.platform })),
      ...extraEntries,
    ],
  };
  return blobOf(Buffer.from(JSON.stringify(index)), MediaType.OciIndex);
}

async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'hyper-test-layer-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), content);
    }
    const chunks: Buffer[] = [];
    const stream = createTar({ cwd: dir, portable: true, mtime: new Date(0) }, Object.keys(files).sort());
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
    return Buffer.concat(chunks);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
