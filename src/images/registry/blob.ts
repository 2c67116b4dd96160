import type { Descriptor } from '../../types/oci/index.js';
import { type BlobIngestion, type BlobStore } from '../store.js';
import type { RegistryClient } from './client.js';
import { describeStatus, networkError, parseRetryAfter, readErrorBody, RegistryError } from './errors.js';
import { withRetry, type RetryPolicy } from './retry.js';

export interface BlobProgress {
  digest: string;
  /** Bytes of this blob in the store so far. */
  bytes: number;
  total: number;
}

export interface BlobDownloadOptions {
  retry: RetryPolicy;
  onProgress?: (progress: BlobProgress) => void;
  onRetry?: (message: string) => void;
}

/**
 * Downloads one blob into the store unless it is already there; returns its path. A broken transfer
 * is retried, resuming with a Range request when the registry supports ranges; a blob whose size or
 * digest is wrong is deleted and refused.
 */
export async function downloadBlob(
  client: RegistryClient,
  descriptor: Descriptor,
  store: BlobStore,
  options: BlobDownloadOptions,
): Promise<string> {
  const { digest, size } = descriptor;
  const report = (bytes: number): void => options.onProgress?.({ digest, bytes, total: size });
  if (await store.has(digest)) {
    report(size);
    return store.path(digest);
  }

  const ingestion = await store.begin(digest, size);
  const state = { resumable: false };
  try {
    await withRetry(
      options.retry,
      () => transfer(client, ingestion, state, report),
      (error, attempt, delayMs) =>
        options.onRetry?.(
          `${error.message}; attempt ${attempt + 1} of ${options.retry.attempts} in ${delayMs} ms`,
        ),
    );
    return await ingestion.commit();
  } finally {
    await ingestion.abort();
  }
}

/**
 * One GET of the blob, appended to what earlier attempts kept. `state.resumable` records whether the
 * registry accepts ranges, so that the next attempt resumes instead of starting over.
 */
async function transfer(
  client: RegistryClient,
  ingestion: BlobIngestion,
  state: { resumable: boolean },
  report: (bytes: number) => void,
): Promise<void> {
  const { digest, size } = ingestion;
  if (ingestion.offset > 0 && !state.resumable) await ingestion.reset();
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  const resumeFrom = ingestion.offset;
  if (resumeFrom > 0) headers.range = `bytes=${resumeFrom}-`;

  const response = await client.request(`/v2/${client.repository}/blobs/${digest}`, { headers });
  if (response.status === 206) {
    if (contentRangeStart(response.headers.get('content-range')) !== resumeFrom) {
      await response.body?.cancel().catch(() => undefined);
      await ingestion.reset();
      const message = `registry ${client.host} answered the range request for blob ${digest} with another range`;
      throw new RegistryError(message, { retryable: true });
    }
  } else if (response.ok) {
    // A registry may ignore Range and send the whole blob.
    if (ingestion.offset > 0) await ingestion.reset();
  } else {
    const body = await readErrorBody(response);
    const message =
      response.status === 404
        ? `blob ${digest} of ${client.repository} not found on registry ${client.host} (${body.code ?? 'HTTP 404'})`
        : `registry ${client.host} answered ${describeStatus(response.status, body)} for blob ${digest}`;
    throw new RegistryError(message, {
      status: response.status,
      code: body.code,
      retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
      ...(response.status === 404 ? { kind: 'NotFound' } : {}),
    });
  }
  state.resumable =
    response.status === 206 || response.headers.get('accept-ranges')?.toLowerCase() === 'bytes';

  if (!response.body) throw new RegistryError(`registry ${client.host} sent blob ${digest} without a body`);
  const chunks = response.body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await chunks.next();
      } catch (error: unknown) {
        throw networkError(
          `download of blob ${digest} from ${client.host} broke after ${ingestion.offset} of ${size} bytes`,
          error,
        );
      }
      if (next.done) break;
      // Store errors (a full disk, a blob larger than declared) propagate as they are: not retryable.
      await ingestion.write(next.value);
      report(ingestion.offset);
    }
  } finally {
    await chunks.return?.().catch(() => undefined);
  }
}

function contentRangeStart(header: string | null): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header?.trim() ?? '');
  return match ? Number(match[1]) : undefined;
}

export interface ParallelDownloadOptions extends BlobDownloadOptions {
  /** Blobs downloaded at once. */
  concurrency?: number;
}

/**
 * Downloads several blobs, `concurrency` at a time (a digest listed twice is fetched once); returns
 * their paths in the order given. The first failure stops further downloads from starting.
 */
export async function downloadBlobs(
  client: RegistryClient,
  descriptors: readonly Descriptor[],
  store: BlobStore,
  options: ParallelDownloadOptions,
): Promise<string[]> {
  const unique = [...new Map(descriptors.map((descriptor) => [descriptor.digest, descriptor])).values()];
  const paths = new Map<string, string>();
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < unique.length) {
      const descriptor = unique[next++] as Descriptor;
      try {
        paths.set(descriptor.digest, await downloadBlob(client, descriptor, store, options));
      } catch (error: unknown) {
        failed = true;
        throw error;
      }
    }
  };
  const concurrency = Math.max(1, options.concurrency ?? 3);
  const workers = Array.from({ length: Math.min(concurrency, unique.length) }, () => worker());
  const rejected = (await Promise.allSettled(workers)).find(
    (result): result is PromiseRejectedResult => result.status === 'rejected',
  );
  if (rejected) throw rejected.reason;
  return descriptors.map((descriptor) => paths.get(descriptor.digest) as string);
}
