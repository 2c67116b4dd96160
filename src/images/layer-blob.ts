import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { execa } from 'execa';
import { CommandError, formatCommand, type Command } from '../process/run.js';
import { MediaType } from '../types/oci/mediatype.js';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

const LAYER_MEDIA_TYPES = new Map<string, LayerCompression>([
  [MediaType.OciLayer, 'none'],
  [MediaType.OciLayerGzip, 'gzip'],
  [MediaType.OciLayerZstd, 'zstd'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', 'zstd'],
  [MediaType.DockerLayerGzip, 'gzip'],
  [MediaType.DockerForeignLayerGzip, 'gzip'],
  ['application/vnd.docker.image.rootfs.diff.tar', 'none'],
]);

/** The compression a layer media type declares; throws, naming the type, for anything that is not a layer tar. */
export function layerCompression(mediaType: string): LayerCompression {
  const compression = LAYER_MEDIA_TYPES.get(mediaType);
  if (compression === undefined) {
    throw new Error(
      `"${mediaType}" is not a supported layer media type; use one of ${[...LAYER_MEDIA_TYPES.keys()].join(', ')}`,
    );
  }
  return compression;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The compression a blob's first bytes show, as Docker and containerd detect it ("none" when no magic matches). */
export function sniffCompression(head: Buffer): LayerCompression {
  if (head.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return 'gzip';
  if (head.subarray(0, ZSTD_MAGIC.length).equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/** Node 20's zlib has no zstd, so zstd layers go through Debian's `zstd` binary. */
export function zstdDecompressCommand(blobPath: string): Command {
  return { program: 'zstd', args: ['-d', '-c', '-q', '--', blobPath] };
}

/** A layer blob opened as a stream of uncompressed tar bytes. */
export interface LayerTarStream {
  /** The compression found by magic bytes, which wins over the media type when they disagree. */
  compression: LayerCompression;
  tar: Readable;
  /**
   * Settles once the blob has been read and decompressed to its end. Rejects, naming the
   * cause, if the data is corrupt or unreadable; resolves if `close()` stopped it early.
   */
  finished: Promise<void>;
  /** Stops reading (and the decompressor) after a failure elsewhere; idempotent. */
  close(): void;
}

export async function openLayerTar(blobPath: string): Promise<LayerTarStream> {
  const compression = sniffCompression(await readHead(blobPath, ZSTD_MAGIC.length));
  if (compression === 'zstd') return zstdStream(blobPath);
  const file = createReadStream(blobPath);
  const finish = settleOnce();
  let tar: Readable = file;
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    gunzip.on('error', (error) =>
      finish.reject(new Error(`gzip data is corrupt: ${error.message}`, { cause: error })),
    );
    tar = file.pipe(gunzip);
  }
  file.on('error', (error) => {
    finish.reject(new Error(`cannot read the blob: ${error.message}`, { cause: error }));
    tar.destroy(error);
  });
  tar.on('end', finish.resolve);
  return {
    compression,
    tar,
    finished: finish.promise,
    close: () => {
      finish.resolve();
      file.destroy();
      tar.destroy();
    },
  };
}

function zstdStream(blobPath: string): LayerTarStream {
  const command = zstdDecompressCommand(blobPath);
  const child = execa(command.program, [...command.args], {
    stdin: 'ignore',
    buffer: { stdout: false },
    reject: false,
  });
  const finish = settleOnce();
  let closed = false;
  void child.then((result) => {
    // A kill by close() is ours; an exit of its own with an error means the data is bad.
    if (!result.failed || (closed && result.isTerminated)) return finish.resolve();
    const started = result.exitCode !== undefined || result.signal !== undefined;
    const why = started ? String(result.stderr ?? '') : (result.originalMessage ?? result.message ?? '');
    const end = { exitCode: result.exitCode, signal: result.signal };
    finish.reject(
      new Error(`zstd data could not be decompressed: ${new CommandError(command, end, why).message}`),
    );
  });
  if (!child.stdout) throw new Error(`${formatCommand(command)} has no stdout`);
  return {
    compression: 'zstd',
    tar: child.stdout,
    finished: finish.promise,
    close: () => {
      closed = true;
      child.kill();
    },
  };
}

async function readHead(blobPath: string, length: number): Promise<Buffer> {
  try {
    const handle = await open(blobPath, 'r');
    try {
      const head = Buffer.alloc(length);
      const { bytesRead } = await handle.read(head, 0, length, 0);
      return head.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot read the blob: ${reason}`, { cause: error });
  }
}

/** A promise settled by whichever of resolve/reject comes first, never left unhandled. */
function settleOnce(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve: () => void = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The reader awaits it only after the tar has been parsed; an early rejection must not count as unhandled.
  promise.catch(() => {});
  return { promise, resolve, reject };
}
