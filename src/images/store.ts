import { createHash, randomBytes, type Hash } from 'node:crypto';
import { mkdir, open, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { type ErrorKind, HyperError, type HyperErrorOptions } from '../errors.js';
import { exists, fileDigest, isNotFound, linkOrCopy } from '../files.js';
import { DIGEST_HEX_LENGTHS } from './reference.js';

export interface ParsedDigest {
  algorithm: string;
  hex: string;
}

/** Splits "sha256:<hex>"; throws when the algorithm is unknown or the hex has the wrong form. */
export function parseDigest(digest: string): ParsedDigest {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const length = DIGEST_HEX_LENGTHS[algorithm];
  if (colon === -1 || length === undefined || hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    throw new Error(`${JSON.stringify(digest)} is not a digest; expected sha256:<64 lowercase hex digits>`);
  }
  return { algorithm, hex };
}

/** The digest of `bytes` in the algorithm of `like` (sha256 by default). */
export function digestOf(bytes: Uint8Array, like = 'sha256:'): string {
  const algorithm = like.slice(0, like.indexOf(':'));
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Downloaded content did not match its descriptor. The partial file has already been deleted. */
export class BlobVerificationError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  constructor(
    readonly digest: string,
    detail: string,
    options?: HyperErrorOptions,
  ) {
    super(`blob ${digest} failed verification: ${detail}`, options);
    this.name = 'BlobVerificationError';
  }
}

/**
 * Content-addressed blobs under `<root>/blobs/<algorithm>/<hex>`. A blob appears under its final name
 * only once complete and verified (temp file in the same directory, fsync, rename), so several
 * processes may pull the same blob at once: the last rename wins and every reader sees a whole file.
 */
export class BlobStore {
  constructor(readonly root: string) {}

  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.root, 'blobs', algorithm, hex);
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.path(digest))).isFile();
    } catch (error: unknown) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Starts writing a blob; the caller writes chunks, then commits (verify + publish) or aborts. */
  async begin(digest: string, size: number): Promise<BlobIngestion> {
    const finalPath = this.path(digest);
    const directory = join(finalPath, '..');
    await mkdir(directory, { recursive: true });
    const tempPath = `${finalPath}.${process.pid}.${randomBytes(6).toString('hex')}.partial`;
    const handle = await open(tempPath, 'wx', 0o644);
    return new BlobIngestion(digest, size, finalPath, tempPath, handle);
  }

  /**
   * Takes in a blob that is already a file (one restored from a cache archive):
   * checks its digest, then links it (copies across filesystems) in beside its
   * final name and renames it there, as commit publishes. Returns its path.
   */
  async adopt(digest: string, file: string): Promise<string> {
    const { algorithm } = parseDigest(digest);
    const actual = `${algorithm}:${await fileDigest(file, algorithm)}`;
    if (actual !== digest) throw new BlobVerificationError(digest, `its content has digest ${actual}`);
    const finalPath = this.path(digest);
    const directory = join(finalPath, '..');
    await mkdir(directory, { recursive: true });
    const tempPath = `${finalPath}.${process.pid}.${randomBytes(6).toString('hex')}.partial`;
    try {
      await linkOrCopy(file, tempPath);
      await rename(tempPath, finalPath);
      await syncDirectory(directory);
    } finally {
      await rm(tempPath, { force: true });
    }
    return finalPath;
  }

  /** Writes a whole blob from `source`, verifies it and publishes it; returns its path. */
  async ingest(digest: string, size: number, source: AsyncIterable<Uint8Array>): Promise<string> {
    const ingestion = await this.begin(digest, size);
    try {
      for await (const chunk of source) await ingestion.write(chunk);
      return await ingestion.commit();
    } finally {
      await ingestion.abort();
    }
  }
}

/** One blob being written to a temp file beside its final name. `abort` is idempotent and safe after `commit`. */
export class BlobIngestion {
  private hash: Hash;
  private written = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    readonly digest: string,
    readonly size: number,
    private readonly finalPath: string,
    readonly tempPath: string,
    private readonly handle: FileHandle,
  ) {
    this.hash = createHash(parseDigest(digest).algorithm);
  }

  /** Bytes written so far: where a resumed download starts. */
  get offset(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.assertOpen();
    if (this.written + chunk.length > this.size) {
      await this.abort();
      throw new BlobVerificationError(this.digest, `received more than the ${this.size} bytes expected`);
    }
    let done = 0;
    try {
      while (done < chunk.length) {
        const { bytesWritten } = await this.handle.write(
          chunk,
          done,
          chunk.length - done,
          this.written + done,
        );
        done += bytesWritten;
      }
    } catch (error: unknown) {
      await this.abort();
      const where = join(this.finalPath, '..', '..', '..');
      throw new Error(`cannot store blob ${this.digest} in ${where}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.hash.update(chunk);
    this.written += chunk.length;
  }

  /** Discards what was written, for a server that answered a range request with the whole blob. */
  async reset(): Promise<void> {
    this.assertOpen();
    await this.handle.truncate(0);
    this.hash = createHash(parseDigest(this.digest).algorithm);
    this.written = 0;
  }

  /** Verifies size and digest, then publishes the blob under its final name; returns that path. */
  async commit(): Promise<string> {
    this.assertOpen();
    const actual = `${parseDigest(this.digest).algorithm}:${this.hash.digest('hex')}`;
    if (this.written !== this.size || actual !== this.digest) {
      await this.abort();
      throw new BlobVerificationError(
        this.digest,
        `expected ${this.size} bytes with digest ${this.digest}, got ${this.written} bytes with digest ${actual}`,
      );
    }
    await this.handle.sync();
    await this.handle.close();
    this.state = 'committed';
    if (await exists(this.finalPath)) {
      // Another writer published the same content first.
      await unlink(this.tempPath);
    } else {
      await rename(this.tempPath, this.finalPath);
      await syncDirectory(join(this.finalPath, '..'));
    }
    return this.finalPath;
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.handle.close().catch(() => undefined);
    await unlink(this.tempPath).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new Error(`blob ${this.digest} is already ${this.state}`);
  }
}

/** Makes the rename itself durable. */
async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
