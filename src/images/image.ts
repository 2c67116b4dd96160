import type { ImageConfig } from '../types/oci/index.js';

/** An image whose manifest, config and layer blobs are all on local disk, ready to become a rootfs. */
export interface LocalImage {
  /** What the user named: `redis:7`, `oci:/path/layout:tag`. */
  name: string;
  manifestDigest: string;
  configDigest: string;
  config: ImageConfig;
  layers: { digest: string; mediaType: string; size: number; path: string }[];
  /**
   * Checks the layer blobs' digests, for sources that did not already (an OCI
   * layout on disk; registry blobs are verified as they are stored). Called
   * only when a root filesystem is about to be built from them.
   */
  verifyLayers?: () => Promise<void>;
}
