import type { LocalImage } from './image.js';
import { readOciLayout } from './oci-layout.js';

export interface ResolveOptions {
  cacheDir: string;
  log: (line: string) => void;
}

/** Turns what the user named into a LocalImage: an OCI layout on disk, or a registry pull. */
export async function resolveImage(name: string, _options: ResolveOptions): Promise<LocalImage> {
  if (name.startsWith('oci:')) return readOciLayout(name);
  throw new Error(`registry images are not wired yet: ${name}`);
}
