/**
 * Pushes test images to a registry with the distribution API: each blob by a monolithic upload
 * (POST /blobs/uploads/ then PUT ?digest=), then manifests. Uses the project's RegistryClient for
 * authentication, asking for pull and push.
 */
import { RegistryClient } from '../../../src/images/registry/client.js';
import { buildAttestation, buildIndex, type TestBlob, type TestImage } from './image.js';
import type { TestRegistry } from './registry.js';

export function pushClient(registry: TestRegistry, repository: string): RegistryClient {
  return new RegistryClient({
    host: registry.host,
    repository,
    credentials: registry.credentials,
    actions: ['pull', 'push'],
  });
}

export async function pushBlob(client: RegistryClient, blob: TestBlob): Promise<void> {
  const head = await client.request(`/v2/${client.repository}/blobs/${blob.digest}`, { method: 'HEAD' });
  if (head.ok) return;

  const started = await client.request(`/v2/${client.repository}/blobs/uploads/`, { method: 'POST' });
  await expectStatus(started, 202, `starting the upload of ${blob.digest}`);
  const location = started.headers.get('location');
  if (!location) throw new Error(`the registry started an upload of ${blob.digest} without a Location`);

  const target = new URL(location, client.baseUrl);
  target.searchParams.set('digest', blob.digest);
  const finished = await client.request(target.toString(), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: blob.bytes,
  });
  await expectStatus(finished, 201, `uploading ${blob.digest}`);
}

/** PUTs a manifest or index under `reference` (a tag, or its digest); returns its digest. */
export async function pushManifest(
  client: RegistryClient,
  reference: string,
  manifest: TestBlob,
): Promise<string> {
  const response = await client.request(`/v2/${client.repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType },
    body: manifest.bytes,
  });
  await expectStatus(response, 201, `putting manifest ${reference}`);
  return manifest.digest;
}

/** Pushes an image's blobs and its manifest, tagged `tag`; returns the manifest digest. */
export async function pushImage(
  registry: TestRegistry,
  repository: string,
  tag: string,
  image: TestImage,
): Promise<string> {
  const client = pushClient(registry, repository);
  for (const blob of [image.config, ...image.layers]) await pushBlob(client, blob);
  return pushManifest(client, tag, image.manifest);
}

/**
 * Pushes several images (by digest) and an OCI index of them tagged `tag`, with an attestation
 * entry for the first unless `attestation` is false; returns the index digest.
 */
export async function pushIndex(
  registry: TestRegistry,
  repository: string,
  tag: string,
  images: TestImage[],
  options: { attestation?: boolean } = {},
): Promise<string> {
  const client = pushClient(registry, repository);
  const extraEntries = [];
  for (const image of images) {
    for (const blob of [image.config, ...image.layers]) await pushBlob(client, blob);
    await pushManifest(client, image.manifest.digest, image.manifest);
  }
  const first = images[0];
  if (options.attestation !== false && first) {
    const attestation = buildAttestation(first);
    for (const blob of attestation.blobs) await pushBlob(client, blob);
    await pushManifest(client, attestation.manifest.digest, attestation.manifest);
    extraEntries.push(attestation.entry);
  }
  return pushManifest(client, tag, buildIndex(images, extraEntries));
}

async function expectStatus(response: Response, status: number, what: string): Promise<void> {
  if (response.status === status) {
    await response.body?.cancel();
    return;
  }
  const body = await response.text().catch(() => '');
  throw new Error(
    `${what}: the registry answered HTTP ${response.status}, expected ${status}: ${body.slice(0, 500)}`,
  );
}
