import { readdir, realpath } from 'node:fs/promises';
import { type ErrorKind, HyperError, type HyperErrorOptions } from '../errors.js';
import { ownsAllIds } from '../host/user.js';
import { layerCompression, openLayerTar, type LayerCompression } from './layer-blob.js';
import { RootTree, type ApplyReport } from './layer-entry.js';
import { messageOf } from './layer-paths.js';
import { forEachTarEntry } from './layer-tar.js';

export { layerCompression, type LayerCompression } from './layer-blob.js';
export type { ApplyReport } from './layer-entry.js';
export { whiteoutTarget, type WhiteoutTarget } from './layer-paths.js';

export interface LayerSource {
  digest: string;
  /** The blob file on disk. */
  path: string;
  mediaType: string;
}

export interface ApplyOptions {
  /** Give entries the uid/gid the layer records. Default: when running as root. */
  preserveOwnership?: boolean;
}

/** A layer that cannot be applied; `entry` is the archive path at fault, "" when the whole layer is. */
export class LayerError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  constructor(
    readonly layer: string,
    readonly entry: string,
    message: string,
    options?: HyperErrorOptions,
  ) {
    super(`layer ${layer}${entry ? `, entry ${JSON.stringify(entry)}` : ''}: ${message}`, options);
    this.name = 'LayerError';
  }
}

/**
 * Applies image layers in order into `rootDir`, an existing empty directory, following the
 * OCI image spec's "Applying Changesets" as Docker does: whiteouts and opaque directories
 * hide lower layers, an entry replaces what a lower layer had at its path (a directory over
 * a directory merges), and owners (see `preserveOwnership`), modes, times and xattrs are kept.
 *
 * Paths: a leading "/" is read as relative to the root, as Docker does. An entry whose path
 * or hardlink target climbs out of the root with "..", or that would write through a symlink
 * (planted by any earlier entry or layer), is refused with a LayerError naming the layer and
 * the entry; symlinks themselves are stored as they are, pointing anywhere.
 *
 * On any failure this throws and leaves `rootDir` half-written: the caller deletes it.
 */
export async function applyLayers(
  layers: readonly LayerSource[],
  rootDir: string,
  options: ApplyOptions = {},
): Promise<ApplyReport> {
  const declared = layers.map((layer) => {
    try {
      return layerCompression(layer.mediaType);
    } catch (error: unknown) {
      throw new LayerError(layer.digest, '', messageOf(error), { cause: error });
    }
  });
  const root = await realpath(rootDir);
  if ((await readdir(root)).length > 0) throw new Error(`cannot apply layers to ${rootDir}: it is not empty`);
  // Root in a user namespace (rootless Podman, userns-remap) can neither chown to every id nor make
  // devices: like a non-root builder, it records them for debugfs to write into the image.
  const ownsIds = await ownsAllIds();
  const tree = new RootTree(root, {
    preserveOwnership: options.preserveOwnership ?? ownsIds,
    canMakeDevices: ownsIds,
  });
  for (const [index, layer] of layers.entries()) {
    await applyLayer(tree, layer, declared[index] ?? 'none');
  }
  return tree.report;
}

async function applyLayer(tree: RootTree, layer: LayerSource, declared: LayerCompression): Promise<void> {
  const blob = await openLayerTar(layer.path).catch((error: unknown) => {
    throw new LayerError(layer.digest, '', messageOf(error), { cause: error });
  });
  try {
    await forEachTarEntry(blob.tar, async (item) => {
      try {
        await tree.apply(item);
      } catch (error: unknown) {
        throw new LayerError(layer.digest, item.entry.path, messageOf(error), { cause: error });
      }
    });
    await blob.finished;
  } catch (error: unknown) {
    if (error instanceof LayerError || blob.compression === 'none') blob.close();
    if (error instanceof LayerError) throw error;
    // Corrupt compressed data often shows first as a broken tar: read on, so the
    // decompressor reaches its own verdict, and name the cause rather than the symptom.
    blob.tar.resume();
    const blobFailure = await blob.finished.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    const message = blobFailure ? messageOf(blobFailure) : tarFailure(error, declared, blob.compression);
    throw new LayerError(layer.digest, '', message, { cause: blobFailure ?? error });
  }
  try {
    await tree.finishLayer();
  } catch (error: unknown) {
    throw new LayerError(layer.digest, '', messageOf(error), { cause: error });
  }
}

function tarFailure(error: unknown, declared: LayerCompression, found: LayerCompression): string {
  const mismatch =
    declared !== found && found === 'none'
      ? ` (the media type says ${declared}, but the blob does not start with ${declared} magic bytes)`
      : '';
  return `not a valid tar archive${mismatch}: ${messageOf(error)}`;
}
