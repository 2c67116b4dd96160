import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LocalImage } from './image.js';
import { rootfsPath } from './rootfs.js';

/** One pulled image as `hyper images` lists it. */
export interface CatalogEntry {
  name: string;
  manifestDigest: string;
  configDigest: string;
  /** Compressed bytes of the layers. */
  size: number;
  blobs: string[];
  pulledAt: string;
}

/**
 * The names pulled into a cache dir: one small JSON file per name, written
 * atomically, so concurrent pulls of different images never share a file.
 */
export class ImageCatalog {
  constructor(private readonly cacheDir: string) {}

  private get dir(): string {
    return path.join(this.cacheDir, 'images');
  }

  private file(name: string): string {
    return path.join(this.dir, `${createHash('sha256').update(name).digest('hex').slice(0, 32)}.json`);
  }

  async record(image: LocalImage): Promise<void> {
    const entry: CatalogEntry = {
      name: image.name,
      manifestDigest: image.manifestDigest,
      configDigest: image.configDigest,
      size: image.layers.reduce((sum, layer) => sum + layer.size, 0),
      blobs: [image.configDigest, ...image.layers.map((layer) => layer.digest)],
      pulledAt: new Date().toISOString(),
    };
    await mkdir(this.dir, { recursive: true });
    const file = this.file(image.name);
    // Unique per write: one process may record the same image for two services at once.
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeFile(temp, JSON.stringify(entry, null, 2));
      await rename(temp, file);
    } catch (error: unknown) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  async list(): Promise<CatalogEntry[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const entries: CatalogEntry[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      try {
        entries.push(JSON.parse(await readFile(path.join(this.dir, name), 'utf8')) as CatalogEntry);
      } catch {
        // A foreign or damaged file is not an image.
      }
    }
    return entries.sort((a, b) => a.name.localeCompare(b.name));
  }

  async remove(name: string): Promise<boolean> {
    const file = this.file(name);
    if (!(await stat(file).catch(() => undefined))) return false;
    await rm(file, { force: true });
    return true;
  }

  async hasRootfs(entry: CatalogEntry): Promise<boolean> {
    return (await stat(rootfsPath(this.cacheDir, entry.configDigest)).catch(() => undefined)) !== undefined;
  }
}
