import path from 'node:path';

/** Where each piece of one VM lives inside its state directory. */
export interface VmPaths {
  dir: string;
  record: string;
  pid: string;
  qmp: string;
  agent: string;
  /** QEMU's end of the virtio-serial port that carries the guest's relayed sockets. */
  relay: string;
  console: string;
  serviceLog: string;
  status: string;
  qemuLog: string;
  rootDisk: string;
  guestFiles: string;
}

export function vmPaths(dir: string): VmPaths {
  return {
    dir,
    record: path.join(dir, 'vm.json'),
    pid: path.join(dir, 'qemu.pid'),
    qmp: path.join(dir, 'qmp.sock'),
    agent: path.join(dir, 'agent.sock'),
    relay: path.join(dir, 'relay.sock'),
    console: path.join(dir, 'console.log'),
    serviceLog: path.join(dir, 'service.log'),
    status: path.join(dir, 'status'),
    qemuLog: path.join(dir, 'qemu.log'),
    rootDisk: path.join(dir, 'rootfs.qcow2'),
    guestFiles: path.join(dir, 'guest'),
  };
}

/** Unix socket paths are limited to 107 bytes on Linux. */
export const MAX_SOCKET_PATH = 107;

/**
 * Where checkpoint `tag` of a VM keeps what is not in its disks (their state
 * is a qcow2 internal snapshot of the same name): the guest's RAM as a file
 * that a restored VM maps copy-on-write, and the device state that goes with it.
 */
export function checkpointPaths(dir: string, tag: string): { dir: string; ram: string; state: string } {
  const at = path.join(dir, 'checkpoints', tag);
  return { dir: at, ram: path.join(at, 'ram'), state: path.join(at, 'state') };
}
