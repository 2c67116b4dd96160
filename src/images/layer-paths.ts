import { posix } from 'node:path';

/** Basename that marks a directory whose lower-layer content is hidden (OCI image spec, "Opaque Whiteout"). */
export const OPAQUE_MARKER = '.wh..wh..opq';
/** Prefix of a whiteout: `.wh.NAME` hides NAME of the lower layers. */
export const WHITEOUT_PREFIX = '.wh.';
/** Old AUFS bookkeeping at the root of a layer (`.wh..wh.plnk`, `.wh..wh.aufs`): never part of the image. */
const AUFS_METADATA_PREFIX = '.wh..wh.';

export interface WhiteoutTarget {
  kind: 'whiteout' | 'opaque' | 'none';
  /** The path hidden (whiteout), the directory cleared (opaque, "." for the root), or the entry path (none). */
  target: string;
}

/** What a layer entry's name means under the OCI whiteout rules. Pure; throws on a whiteout that names nothing. */
export function whiteoutTarget(entryPath: string): WhiteoutTarget {
  const trimmed = entryPath.replace(/\/+$/, '');
  const base = posix.basename(trimmed);
  const dir = posix.dirname(trimmed);
  if (base === OPAQUE_MARKER) return { kind: 'opaque', target: posix.normalize(dir) };
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none', target: entryPath };
  const name = base.slice(WHITEOUT_PREFIX.length);
  // ".wh.." would hide the directory holding it, ".wh..." its parent: neither is a whiteout of a name.
  if (name === '' || name === '.' || name === '..') {
    throw new Error(`"${base}" is not a valid whiteout: it names no file`);
  }
  return { kind: 'whiteout', target: posix.join(dir, name) };
}

/**
 * The path an entry names, relative to the root, "" for the root itself. A leading "/" is
 * dropped, as Docker does ("/etc/x" is "etc/x" in the image), "." parts are dropped and ".."
 * is resolved by text alone: the file system is never asked, so a symlink cannot bend it.
 * Throws if ".." climbs above the root.
 */
export function rootRelativePath(tarPath: string): string {
  const parts: string[] = [];
  for (const part of tarPath.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..') parts.push(part);
    else if (parts.pop() === undefined)
      throw new Error(`the path "${tarPath}" leads outside the root directory`);
  }
  return parts.join('/');
}

/** The directories above a root-relative path, outermost first: "a/b/c" -> ["a", "a/b"]. */
export function parentPaths(relPath: string): string[] {
  const parts = relPath.split('/');
  return parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/'));
}

/** True for AUFS metadata at the root of a layer, which Docker skips too. */
export function isAufsMetadata(relPath: string): boolean {
  return relPath.startsWith(AUFS_METADATA_PREFIX) && relPath !== OPAQUE_MARKER;
}

/** True when `relPath` is `dir` or lies under it; "" (the root) contains everything. */
export function isWithin(relPath: string, dir: string): boolean {
  return dir === '' || relPath === dir || relPath.startsWith(`${dir}/`);
}

/** The message of anything thrown, for error text that names its cause. */
export function messageOf(error: unknown): string {
  // By shape, not instanceof: errors from Node's own modules can come from another realm (jest's VM).
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}
