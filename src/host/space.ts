import { statfs } from 'node:fs/promises';

/** The part of statfs(2) that says how much an unprivileged writer may still use. */
export interface FsSpace {
  bavail: number;
  bsize: number;
}

/** Bytes free to an unprivileged writer; undefined when statfs failed (missing path, no permission, odd fs). Pure. */
export function freeBytes(space: FsSpace | undefined): number | undefined {
  if (!space) return undefined;
  const bytes = space.bavail * space.bsize;
  return Number.isFinite(bytes) && bytes >= 0 ? bytes : undefined;
}

/** Whether a filesystem with `free` bytes (undefined: unknown) holds `needed`; unknown never does. Pure. */
export function hasRoom(free: number | undefined, needed: number): boolean {
  return free !== undefined && free >= needed;
}

/** Free bytes on the filesystem holding `dir`; undefined when it cannot be told. Never throws. */
export async function readFreeBytes(dir: string): Promise<number | undefined> {
  return freeBytes(await statfs(dir).catch(() => undefined));
}
