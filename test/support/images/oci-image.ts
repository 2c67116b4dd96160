/** Assembles a TestImage (config, manifest, layer blobs) from layers that are already gzip tars. */
import { gzipSync } from 'node:zlib';

import type { ImageConfig, ImageManifest, Platform } from '../../../src/types/oci/index.js';
import { MediaType } from '../../../src/types/oci/index.js';
import { blobOf, descriptorOf, type TestBlob, type TestImage } from '../registry/image.js';
import { sha256Digest } from '../tar-builder.js';

export interface GzipLayer {
  blob: TestBlob;
  /** Digest of the uncompressed tar: the config's diff_id. */
  diffId: string;
  /** Bytes of the uncompressed tar. */
  tarBytes: number;
}

export interface LayeredImageOptions {
  platform?: Platform;
  cmd?: string[];
  /** Goes into the config's history, so images of the same layers can differ by config digest. */
  createdBy?: string;
}

export function imageOfLayers(layers: readonly GzipLayer[], options: LayeredImageOptions = {}): TestImage {
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: options.cmd ?? ['/bin/sh'],
      WorkingDir: '/',
    },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map(() => ({ created_by: options.createdBy ?? 'hyper-services test support' })),
  };
  const configBlob = blobOf(Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: descriptorOf(configBlob),
    layers: layers.map((layer) => descriptorOf(layer.blob)),
  };
  return {
    platform,
    config: configBlob,
    layers: layers.map((layer) => layer.blob),
    manifest: blobOf(Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest),
  };
}

/** A gzip layer blob of `tar`, held in memory. */
export function gzipLayer(tar: Buffer): GzipLayer {
  return {
    blob: blobOf(gzipSync(tar), MediaType.OciLayerGzip),
    diffId: sha256Digest(tar),
    tarBytes: tar.length,
  };
}
