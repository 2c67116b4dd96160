import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';

import { BlobStore, BlobVerificationError } from '../../../src/images/store.js';

/** Yields `bytes` in small chunks, handing control back between them so writers interleave. */
async function* chunked(bytes: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) {
    await nextTurn();
    yield bytes.subarray(offset, offset + size);
  }
}

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

describe('BlobStore', () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'hyper-store-'));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lets two store instances ingest the same blob at once, and keeps one whole copy', async () => {
    const bytes = randomBytes(4 * 1024 * 1024);
    const digest = digestOf(bytes);
    const first = new BlobStore(root);
    const second = new BlobStore(root);

    let seenHalfWritten = false;
    const watcher = (async () => {
      // While both write, the final name either does not exist or holds the whole blob.
      for (let i = 0; i < 200; i++) {
        if (await first.has(digest)) {
          const content = await readFile(first.path(digest));
          if (!content.equals(bytes)) seenHalfWritten = true;
          return;
        }
        await nextTurn();
      }
    })();

    const paths = await Promise.all([
      first.ingest(digest, bytes.length, chunked(bytes)),
      second.ingest(digest, bytes.length, chunked(bytes, 100_000)),
    ]);
    await watcher;

    expect(paths).toEqual([first.path(digest), first.path(digest)]);
    expect(seenHalfWritten).toBe(false);
    expect((await readFile(first.path(digest))).equals(bytes)).toBe(true);
    expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([digest.slice('sha256:'.length)]);
    expect(await second.has(digest)).toBe(true);
  });

  it('deletes a blob whose content does not match its digest', async () => {
    const store = new BlobStore(root);
    const bytes = randomBytes(200_000);
    const digest = digestOf(bytes);
    const corrupt = Buffer.from(bytes);
    corrupt[1000] = (corrupt[1000] ?? 0) ^ 0xff;

    await expect(store.ingest(digest, bytes.length, chunked(corrupt))).rejects.toThrow(BlobVerificationError);
    expect(await store.has(digest)).toBe(false);
    expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('refuses a blob longer or shorter than its descriptor says', async () => {
    const store = new BlobStore(root);
    const bytes = randomBytes(10_000);
    const digest = digestOf(bytes);

    await expect(store.ingest(digest, bytes.length - 1, chunked(bytes, 1000))).rejects.toThrow(
      `blob ${digest} failed verification: received more than the 9999 bytes expected`,
    );
    await expect(store.ingest(digest, bytes.length, chunked(bytes.subarray(0, 5000), 1000))).rejects.toThrow(
      /expected 10000 bytes with digest .*, got 5000 bytes/,
    );
    expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('keeps a blob out of sight until it is committed, and cleans up an aborted one', async () => {
    const store = new BlobStore(root);
    const bytes = randomBytes(1000);
    const digest = digestOf(bytes);

    const ingestion = await store.begin(digest, bytes.length);
    await ingestion.write(bytes.subarray(0, 500));
    expect(await store.has(digest)).toBe(false);
    await ingestion.reset();
    expect(ingestion.offset).toBe(0);
    await ingestion.write(bytes);
    expect(await ingestion.commit()).toBe(store.path(digest));
    await ingestion.abort();
    expect(await store.has(digest)).toBe(true);

    const abandoned = await store.begin(digest, bytes.length);
    await abandoned.write(bytes.subarray(0, 10));
    await abandoned.abort();
    await abandoned.abort();
    expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([digest.slice('sha256:'.length)]);
  });

  it('refuses a malformed digest', () => {
    const store = new BlobStore(root);
    expect(() => store.path('sha256:../../etc/passwd')).toThrow('is not a digest');
    expect(() => store.path('md5:d41d8cd98f00b204e9800998ecf8427e')).toThrow('is not a digest');
  });
});
