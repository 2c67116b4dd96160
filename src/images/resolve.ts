import path from 'node:path';
import { ImageCatalog } from './catalog.js';
import type { LocalImage } from './image.js';
import { readOciLayout } from './oci-layout.js';
import { formatReference, parseImageReference } from './reference.js';
import { pullImage, type PullOptions } from './registry/pull.js';
import { BlobStore } from './store.js';

export interface ResolveOptions extends Pick<
  PullOptions,
  'credentials' | 'insecureRegistries' | 'registryMirror'
> {
  cacheDir: string;
  log: (line: string) => void;
}

/** Turns what the user named into a LocalImage: an OCI layout on disk (oci:DIR[:TAG]), or a registry pull. */
export async function resolveImage(name: string, options: ResolveOptions): Promise<LocalImage> {
  const image = name.startsWith('oci:') ? await readOciLayout(name) : await pull(name, options);
  await new ImageCatalog(options.cacheDir).record(image);
  return image;
}

async function pull(name: string, options: ResolveOptions): Promise<LocalImage> {
  const reference = parseImageReference(name);
  const store = new BlobStore(path.join(options.cacheDir, 'store'));
  options.log(`Pulling ${formatReference(reference)}`);
  const pulled = await pullImage(reference, store, {
    credentials: options.credentials,
    insecureRegistries: options.insecureRegistries,
    registryMirror: options.registryMirror,
  });
  return {
    name,
    manifestDigest: pulled.manifestDigest,
    configDigest: pulled.configDigest,
    config: pulled.config,
    layers: pulled.layers,
  };
}
