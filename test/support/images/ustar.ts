/**
 * Writes ustar archives header by header, for layer entries GNU tar will not write from a
 * directory: whiteouts, a hardlink to a file of a lower layer, paths that climb out.
 */
import { createHash } from 'node:crypto';

export type UstarKind = 'file' | 'hardlink' | 'symlink' | 'directory';

export interface UstarEntry {
  path: string;
  kind?: UstarKind;
  data?: string | Buffer;
  /** Hardlink or symlink target. */
  linkpath?: string;
  /** Permission bits with setuid/setgid/sticky; by default 0644, 0755 for a directory, 0777 for a symlink. */
  mode?: number;
  uid?: number;
  gid?: number;
}

const BLOCK = 512;
const TYPEFLAG: Record<UstarKind, string> = { file: '0', hardlink: '1', symlink: '2', directory: '5' };
const DEFAULT_MODE: Record<UstarKind, number> = {
  file: 0o644,
  hardlink: 0o644,
  symlink: 0o777,
  directory: 0o755,
};

/** The archive of `entries`, in order, with mtime 0 and root ownership unless given. Pure. */
export function ustarArchive(entries: readonly UstarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const kind = entry.kind ?? 'file';
    const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : (entry.data ?? Buffer.alloc(0));
    if (kind !== 'file' && data.length > 0) throw new Error(`${entry.path}: only a file has content`);
    blocks.push(
      ustarHeader(entry, kind, data.length),
      data,
      Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK),
    );
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}

function ustarHeader(entry: UstarEntry, kind: UstarKind, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  text(block, 0, 100, entry.path, 'path');
  octal(block, 100, 8, entry.mode ?? DEFAULT_MODE[kind]);
  octal(block, 108, 8, entry.uid ?? 0);
  octal(block, 116, 8, entry.gid ?? 0);
  octal(block, 124, 12, size);
  octal(block, 136, 12, 0);
  block.write(TYPEFLAG[kind], 156, 1, 'latin1');
  if (entry.linkpath !== undefined) text(block, 157, 100, entry.linkpath, 'linkpath');
  block.write('ustar\u000000', 257, 8, 'latin1');
  // The checksum is summed with its own field read as spaces.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  return block;
}

function text(block: Buffer, offset: number, length: number, value: string, field: string): void {
  if (Buffer.byteLength(value) > length)
    throw new Error(`${field} "${value}" does not fit in ${length} bytes`);
  block.write(value, offset, length, 'utf8');
}

function octal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'latin1');
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
