import type { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';

export interface Xattr {
  name: string;
  value: Buffer;
}

/** One tar entry, paused until its visitor reads it, with what node-tar leaves out of it. */
export interface TarEntry {
  entry: ReadEntry;
  /** From the entry's PAX header (`SCHILY.xattr.NAME=VALUE`, as Docker and GNU tar write them). */
  xattrs: Xattr[];
  /** Names of xattrs whose values did not survive node-tar's text decoding of the PAX header. */
  unreadableXattrs: string[];
}

const BLOCK = 512;
const XATTR_KEY = 'SCHILY.xattr.';

/**
 * Reads a tar stream with node-tar's Parser and hands each entry to `visit`, one at a time,
 * in archive order: the next entry is not visited before the previous visit has settled.
 * Entries node-tar ignores (unsupported types, oversized headers) are visited too, with
 * `entry.ignore` set, so the visitor can refuse them. Resolves when the archive has ended
 * and every visit is done; on the first failure (stream, tar format or visitor) stops
 * reading, waits for the visit under way, and throws that failure. The source is left as
 * it is then, for the caller to drain or destroy.
 */
export async function forEachTarEntry(
  source: Readable,
  visit: (item: TarEntry) => Promise<void>,
): Promise<void> {
  const parser = new Parser({ strict: true });
  let failure: { error: unknown } | undefined;
  let wake: () => void = () => {};
  const failed = new Promise<void>((resolve) => (wake = resolve));
  const fail = (error: unknown): void => {
    failure ??= { error };
    wake();
  };

  let current: ReadEntry | undefined;
  let visits = Promise.resolve();
  let headers: string[] = [];
  parser.on('meta', (body: string) => headers.push(body));
  let onlyZeros = true;
  parser.on('error', (error: Error & { tarCode?: string }) => {
    // Nothing but end blocks, or no bytes at all: Docker's empty layer, which node-tar calls unrecognized.
    if (!(error.tarCode === 'TAR_BAD_ARCHIVE' && onlyZeros)) fail(error);
  });
  const onEntry = (entry: ReadEntry): void => {
    const item: TarEntry = { entry, ...paxXattrs(headers) };
    headers = [];
    visits = visits.then(async () => {
      try {
        if (failure) return;
        current = entry;
        await visit(item);
      } catch (error: unknown) {
        fail(error);
      } finally {
        current = undefined;
        entry.resume();
      }
    });
  };
  parser.on('entry', onEntry);
  parser.on('ignoredEntry', onEntry);
  const ended = new Promise<void>((resolve) => parser.on('end', resolve));

  try {
    const stopped = (): boolean => failure !== undefined;
    await feed(source, parser, stopped, failed, (chunk) => {
      onlyZeros &&= chunk.every((byte) => byte === 0);
    });
    await Promise.race([ended, failed]);
  } catch (error: unknown) {
    fail(error);
  }
  // Nothing more will be written to the entry under way: end it so a visitor waiting for its data returns.
  if (failure) current?.end();
  await visits;
  if (failure) throw failure.error;
}

/**
 * Writes the stream into the parser in whole 512-byte blocks, honouring backpressure. Whole
 * blocks matter: node-tar decodes a PAX header chunk by chunk, so a multi-byte character
 * split between two writes would turn into U+FFFD and the header would be dropped.
 */
async function feed(
  source: Readable,
  parser: Parser,
  stopped: () => boolean,
  failed: Promise<void>,
  inspect: (chunk: Buffer) => void,
): Promise<void> {
  let carry = Buffer.alloc(0);
  for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    if (stopped()) return;
    inspect(chunk);
    const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const whole = data.length - (data.length % BLOCK);
    carry = Buffer.from(data.subarray(whole));
    if (whole > 0 && !parser.write(data.subarray(0, whole))) {
      await Promise.race([new Promise((resolve) => parser.once('drain', resolve)), failed]);
      if (stopped()) return;
    }
  }
  if (stopped()) return;
  if (carry.length > 0) parser.write(carry);
  parser.end();
}

/**
 * The `SCHILY.xattr.*` records of the PAX headers before an entry. node-tar keeps only the
 * keys it knows and hands headers over as UTF-8 text, so binary values that are not valid
 * UTF-8 cannot be recovered: those are named in `unreadableXattrs`. Pure.
 */
export function paxXattrs(headers: readonly string[]): { xattrs: Xattr[]; unreadableXattrs: string[] } {
  const xattrs: Xattr[] = [];
  const unreadableXattrs: string[] = [];
  for (const header of headers) {
    if (!header.includes(XATTR_KEY)) continue;
    const bytes = Buffer.from(header, 'utf8');
    let at = 0;
    while (at < bytes.length) {
      const space = bytes.indexOf(0x20, at);
      const length = space > at ? Number(bytes.toString('latin1', at, space)) : NaN;
      if (
        !Number.isInteger(length) ||
        length <= 0 ||
        at + length > bytes.length ||
        bytes[at + length - 1] !== 0x0a
      ) {
        // Record lengths count the original bytes: once decoding has changed them, the rest cannot be split.
        const rest = bytes.toString('utf8', at);
        for (const match of rest.matchAll(/SCHILY\.xattr\.([^=\n]+)=/g)) {
          unreadableXattrs.push(match[1] ?? '');
        }
        break;
      }
      const record = bytes.subarray(space + 1, at + length - 1);
      const equals = record.indexOf(0x3d);
      const key = record.toString('utf8', 0, equals < 0 ? record.length : equals);
      if (equals >= 0 && key.startsWith(XATTR_KEY)) {
        xattrs.push({ name: key.slice(XATTR_KEY.length), value: Buffer.from(record.subarray(equals + 1)) });
      }
      at += length;
    }
  }
  return { xattrs, unreadableXattrs };
}
