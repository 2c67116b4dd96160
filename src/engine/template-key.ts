import type { Accel } from '../vm/hypervisor.js';

/** Everything a service's state on first becoming healthy depends on. */
export interface ServiceTemplateKey {
  format: number;
  name: string;
  imageDigest: string;
  argv: string[];
  env: string[];
  user: string;
  workdir: string;
  stopSignal: string;
  /** The mounts in order; a copied host directory by the digest of its content. */
  mounts: unknown[];
  extraHosts: unknown[];
  apiSockets: string[];
  /** The hostname, kernel settings and files a service adds (compose), when it adds any. */
  guest?: Record<string, unknown>;
  volumeBytes: number;
  volumeSizes: Record<string, number>;
  memoryMiB: number;
  cpus: number;
  bundle: string;
  qemu: string;
  accel: Accel;
  cpu: string;
  network: string;
}
