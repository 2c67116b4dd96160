/** What a hypervisor must do for one VM. QEMU implements it; Firecracker and Cloud Hypervisor can later. */
export type Accel = 'kvm' | 'tcg';

export interface GuestBundle {
  /** Content hash of the recipe that built it. */
  version: string;
  kernel: string;
  initrd: string;
}

export interface PortForward {
  protocol: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** A file handed to the guest through fw_cfg (name under opt/hyper/). */
export interface GuestFile {
  name: string;
  path: string;
}

export interface MachineSpec {
  name: string;
  /** Per-VM state directory: sockets, logs and disks live here. */
  dir: string;
  accel: Accel;
  memoryMiB: number;
  cpus: number;
  bundle: GuestBundle;
  /** qcow2 overlay whose backing file is the image's read-only ext4 base. */
  rootDisk: string;
  guestFiles: GuestFile[];
  ports: PortForward[];
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

export interface Hypervisor {
  /** Starts the VM as a detached process and returns its pid once the process is up. */
  start(spec: MachineSpec): Promise<{ pid: number }>;
  /** Waits until the guest has started the service; throws with the console tail on failure. */
  waitUntilRunning(spec: MachineSpec, timeoutMs: number): Promise<void>;
  exec(spec: MachineSpec, argv: string[], timeoutMs: number): Promise<ExecResult>;
  /** Asks the guest to stop its service; resolves once the VM process has gone or the grace time ran out. */
  stop(spec: MachineSpec, graceMs: number): Promise<'graceful' | 'killed'>;
  kill(spec: MachineSpec): Promise<void>;
  isRunning(spec: MachineSpec): Promise<boolean>;
}
