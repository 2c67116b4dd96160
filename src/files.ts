import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, stat } from 'node:fs/promises';
import { run } from './process/run.js';

/** File helpers every layer uses. */

export function isNotFound(error: unknown): boolean {
  // Duck-typed: errors from Node's internals may come from another realm (jest's VM modules).
  return typeof error === 'object' && error !== null && (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Whether `path` exists; any error but "not found" (a permission problem, say) is thrown. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error: unknown) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** The apparent size of everything under `dir`, in bytes (what a copy of it holds). */
export async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run({ program: 'du', args: ['-s', '-B1', '--apparent-size', dir] });
  return Number.parseInt(stdout, 10);
}

/** A hard link when the two paths share a filesystem, else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
  }
}

/** The hex digest of a file's content, read as a stream (`algorithm` as node:crypto names it). */
export async function fileDigest(file: string, algorithm = 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
