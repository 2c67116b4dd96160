import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type ErrorKind, HyperError } from '../errors.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../types/oci/index.js';
import { MediaType } from '../types/oci/index.js';
import type { LocalImage } from './image.js';
import { DEFAULT_PLATFORM, selectPlatform } from './registry/manifest.js';

/** A layout that cannot be read as an image; a missing one or a missing tag is NotFound. */
export class OciLayoutError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'OciLayoutError';
}

const REF_NAME = 'org.opencontainers.image.ref.name';

/** `oci:DIR[:TAG]` -> directory and tag. The tag is whatever follows the last ':' after the last '/'. */
export function parseOciReference(text: string): { dir: string; tag: string | undefined } {
  const body = text.slice('oci:'.length);
  const slash = body.lastIndexOf('/');
  const colon = body.lastIndexOf(':');
  if (colon > slash && colon > 0) return { dir: body.slice(0, colon), tag: body.slice(colon + 1) };
  return { dir: body, tag: undefined };
}

function blobPath(dir: string, digest: string): string {
  const match = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(digest);
  if (!match) throw new OciLayoutError(`invalid digest "${digest}" in ${dir}`);
  return path.join(dir, 'blobs', match[1] as string, match[2] as string);
}

async function readJson<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new OciLayoutError(`${what} is missing: ${file}`, { kind: 'NotFound' });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new OciLayoutError(`${what} is not valid JSON: ${file}`);
  }
}

/** Checks a blob's size and, unless `sizeOnly`, its digest against its descriptor. */
async function verifyBlob(file: string, descriptor: Descriptor, sizeOnly = false): Promise<void> {
  const info = await stat(file).catch(() => undefined);
  if (!info) throw new OciLayoutError(`blob ${descriptor.digest} is missing from the layout (${file})`);
  if (info.size !== descriptor.size) {
    throw new OciLayoutError(
      `blob ${descriptor.digest} has ${info.size} bytes, its descriptor says ${descriptor.size}`,
    );
  }
  if (sizeOnly) return;
  const [algorithm] = descriptor.digest.split(':');
  const hash = createHash(algorithm ?? 'sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  if (`${algorithm}:${hash.digest('hex')}` !== descriptor.digest) {
    throw new OciLayoutError(`blob ${descriptor.digest} does not match its digest (corrupt layout?)`);
  }
}

/** Reads an OCI image layout (image-spec `image-layout.md`) into a LocalImage. */
export async function readOciLayout(
  text: string,
  platform: Platform = DEFAULT_PLATFORM,
): Promise<LocalImage> {
  const { dir, tag } = parseOciReference(text);
  if (!dir) throw new OciLayoutError(`"${text}" names no directory; use oci:DIR[:TAG]`);
  const layout = await readJson<{ imageLayoutVersion?: string }>(
    path.join(dir, 'oci-layout'),
    'OCI layout marker',
  );
  if (!layout.imageLayoutVersion) throw new OciLayoutError(`${dir}/oci-layout has no imageLayoutVersion`);
  const index = await readJson<ImageIndex>(path.join(dir, 'index.json'), 'OCI layout index');
  const entries = index.manifests ?? [];
  let chosen: Descriptor | undefined;
  if (tag !== undefined) {
    chosen = entries.find((d) => d.annotations?.[REF_NAME] === tag);
    if (!chosen) {
      const tags = entries.map((d) => d.annotations?.[REF_NAME]).filter(Boolean);
      throw new OciLayoutError(`no image tagged "${tag}" in ${dir} (tags: ${tags.join(', ') || 'none'})`, {
        kind: 'NotFound',
      });
    }
  } else {
    chosen =
      entries.find((d) => d.annotations?.[REF_NAME] === 'latest') ??
      (entries.length === 1 ? entries[0] : undefined);
    if (!chosen)
      throw new OciLayoutError(`${dir} holds ${entries.length} images; name one with oci:${dir}:TAG`);
  }

  // An entry may itself be an index (a multi-platform image): pick the platform.
  for (
    let depth = 0;
    chosen.mediaType === MediaType.OciIndex || chosen.mediaType === MediaType.DockerManifestList;
    depth++
  ) {
    if (depth > 4) throw new OciLayoutError(`${dir}: indexes nested too deep`);
    const nested: ImageIndex = await readJson<ImageIndex>(
      blobPath(dir, chosen.digest),
      `index ${chosen.digest}`,
    );
    chosen = selectPlatform(nested, platform, `${dir} (${chosen.digest})`);
  }

  const manifestFile = blobPath(dir, chosen.digest);
  await verifyBlob(manifestFile, chosen);
  const manifest = await readJson<ImageManifest>(manifestFile, `manifest ${chosen.digest}`);
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new OciLayoutError(`manifest ${chosen.digest} in ${dir} has no config or layers`);
  }
  const configFile = blobPath(dir, manifest.config.digest);
  await verifyBlob(configFile, manifest.config);
  const config = await readJson<ImageConfig>(configFile, `config ${manifest.config.digest}`);
  const layers = [];
  for (const layer of manifest.layers) {
    const file = blobPath(dir, layer.digest);
    // Hashing the layers is only worth it when they are about to be unpacked (see verifyLayers).
    await verifyBlob(file, layer, true);
    layers.push({ digest: layer.digest, mediaType: layer.mediaType, size: layer.size, path: file });
  }
  return {
    name: text,
    manifestDigest: chosen.digest,
    configDigest: manifest.config.digest,
    config,
    layers,
    verifyLayers: async () => {
      for (const layer of manifest.layers) await verifyBlob(blobPath(dir, layer.digest), layer);
    },
  };
}
