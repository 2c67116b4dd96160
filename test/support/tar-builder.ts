// Builds tar archives byte by byte, so tests can craft entries no well-behaved tar writer
// would produce: "../x", absolute paths, links that climb out, writes through symlinks.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

export type RawKind = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface RawEntry {
  path: string;
  kind?: RawKind;
  /** Overrides the type flag that `kind` implies, for types the reader must refuse. */
  typeflag?: string;
  data?: string | Buffer;
  linkpath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** PAX records written in an extended header before the entry. */
  pax?: Record<string, string | Buffer>;
}

const BLOCK = 512;
const TYPEFLAGS: Record<RawKind, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

export function tarBuffer(entries: readonly RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const pax: Record<string, string | Buffer> = { ...entry.pax };
    // Long or non-ASCII names go in PAX records, as real writers do; the ustar field gets a stand-in.
    if (!fitsUstar(entry.path)) pax.path = entry.path;
    if (entry.linkpath !== undefined && !fitsUstar(entry.linkpath)) pax.linkpath = entry.linkpath;
    if (Object.keys(pax).length > 0) {
      const body = paxBody(pax);
      blocks.push(header({ path: 'PaxHeader', typeflag: 'x', size: body.length }), pad(body));
    }
    const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : (entry.data ?? Buffer.alloc(0));
    const kind = entry.kind ?? 'file';
    blocks.push(
      header({
        path: fitsUstar(entry.path) ? entry.path : 'long-name',
        typeflag: entry.typeflag ?? TYPEFLAGS[kind],
        size: data.length,
        linkpath: entry.linkpath === undefined || fitsUstar(entry.linkpath) ? entry.linkpath : 'long-link',
        mode: entry.mode ?? (kind === 'dir' ? 0o755 : kind === 'symlink' ? 0o777 : 0o644),
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        mtime: entry.mtime ?? 1_700_000_000,
        devmajor: entry.devmajor ?? 0,
        devminor: entry.devminor ?? 0,
      }),
      pad(data),
    );
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}

interface HeaderFields {
  path: string;
  typeflag: string;
  size: number;
  linkpath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
}

function header(fields: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(fields.path, 0, 100, 'utf8');
  octal(block, 100, 8, fields.mode ?? 0o644);
  octal(block, 108, 8, fields.uid ?? 0);
  octal(block, 116, 8, fields.gid ?? 0);
  octal(block, 124, 12, fields.size);
  octal(block, 136, 12, fields.mtime ?? 1_700_000_000);
  block.write(fields.typeflag, 156, 1, 'latin1');
  if (fields.linkpath !== undefined) block.write(fields.linkpath, 157, 100, 'utf8');
  block.write('ustar\u000000', 257, 8, 'latin1');
  octal(block, 329, 8, fields.devmajor ?? 0);
  octal(block, 337, 8, fields.devminor ?? 0);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  return block;
}

function octal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'latin1');
}

function paxBody(records: Record<string, string | Buffer>): Buffer {
  return Buffer.concat(
    Object.entries(records).map(([key, value]) => {
      const text = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
      let length = text.length + String(text.length).length;
      if (String(length).length !== String(text.length).length) length += 1;
      return Buffer.concat([Buffer.from(String(length)), text]);
    }),
  );
}

function fitsUstar(name: string): boolean {
  return Buffer.byteLength(name) <= 100 && /^[\x20-\x7e]*$/.test(name);
}

function pad(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

export type BlobCompression = 'none' | 'gzip' | 'zstd';

export const LAYER_MEDIA_TYPES: Record<BlobCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** Writes `tar` compressed as asked to `file`; returns its sha256 digest. */
export async function writeBlob(file: string, tar: Buffer, compression: BlobCompression): Promise<string> {
  if (compression === 'zstd') {
    await writeFile(`${file}.tar`, tar);
    execFileSync('zstd', ['-q', '-f', '-o', file, `${file}.tar`]);
  } else {
    await writeFile(file, compression === 'gzip' ? gzipSync(tar) : tar);
  }
  return `sha256:${createHash('sha256')
    .update(await readFile(file))
    .digest('hex')}`;
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
