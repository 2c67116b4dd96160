import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { blobOf } from './image.js';
import { pushBlob, pushClient, pushManifest } from './push.js';
import type { TestRegistry } from './registry.js';

/** Pushes the single image of an OCI layout to `repository:tag`; returns the reference. */
export async function pushLayout(
  registry: TestRegistry,
  layout: string,
  repository: string,
  tag: string,
): Promise<string> {
  const blob = async (digest: string, mediaType: string) =>
    blobOf(await readFile(path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length))), mediaType);
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const descriptor = index.manifests[0];
  const manifestBlob = await blob(descriptor.digest, descriptor.mediaType);
  const manifest = JSON.parse(manifestBlob.bytes.toString());
  const client = pushClient(registry, repository);
  await pushBlob(client, await blob(manifest.config.digest, manifest.config.mediaType));
  for (const layer of manifest.layers) await pushBlob(client, await blob(layer.digest, layer.mediaType));
  await pushManifest(client, tag, manifestBlob);
  return `${registry.host}/${repository}:${tag}`;
}
