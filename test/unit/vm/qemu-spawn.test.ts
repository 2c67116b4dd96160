import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  cgroupName,
  INCOMING_FD,
  machineLimits,
  openDisks,
  qemuCommand,
  qemuNetns,
} from '../../../src/vm/qemu/spawn.js';
import { addFdArgs, CONTROL_FD, qemuArgs } from '../../../src/vm/qemu/args.js';
import { jailArgs, pathInJail } from '../../../src/vm/qemu/jail.js';
import type { MachineSpec } from '../../../src/vm/hypervisor.js';

describe('starting QEMU', () => {
  test('in cgroups: a shell joins each, then becomes QEMU; without any, QEMU itself', () => {
    expect(qemuCommand('qemu-system-x86_64', ['-name', 'web'], [])).toEqual({
      program: 'qemu-system-x86_64',
      args: ['-name', 'web'],
    });
    const joined = qemuCommand(
      'qemu-system-x86_64',
      ['-name', 'web'],
      ['/cg/memory/hyper/vm-a/cgroup.procs', '/cg/pids/hyper/vm-a/cgroup.procs'],
    );
    expect(joined.program).toBe('sh');
    expect(joined.args.slice(2)).toEqual([
      'sh',
      '/cg/memory/hyper/vm-a/cgroup.procs',
      '/cg/pids/hyper/vm-a/cgroup.procs',
      '--',
      'qemu-system-x86_64',
      '-name',
      'web',
    ]);
    expect(joined.args[1]).toContain('exec "$@"');
  });

  test("in a network namespace: nsenter enters a bridge member's, unshare makes an empty one; around the cgroup shell", () => {
    const procs = ['/cg/memory/hyper/vm-a/cgroup.procs'];
    const entered = qemuCommand('qemu-system-x86_64', ['-name', 'web'], procs, { enter: '/run/netns/hy1t0' });
    expect(entered.program).toBe('nsenter');
    expect(entered.args.slice(0, 3)).toEqual(['--net=/run/netns/hy1t0', '--', 'sh']);
    expect(entered.args.slice(-4)).toEqual(['--', 'qemu-system-x86_64', '-name', 'web']);
    expect(qemuCommand('qemu-system-x86_64', ['-S'], [], 'empty')).toEqual({
      program: 'unshare',
      args: ['--net', '--', 'qemu-system-x86_64', '-S'],
    });
  });

  test("which namespace: a bridge member's own; an empty one for a jailed template or capture; else the host's", () => {
    const tap = {
      network: { kind: 'tap', ifname: 'tap0', mac: '52:54:00:00:00:01', netns: '/run/netns/hy1t0' },
    } as const;
    const user: Pick<MachineSpec, 'network'> = {
      network: { kind: 'user', restrict: false, guestForwards: [], connect: '/c' },
    };
    const jailed = { dir: '/j', ids: { uid: 100000, gid: 100000 }, netns: true };
    for (const kind of ['boot', 'clone'] as const) {
      const launch = kind === 'boot' ? { kind } : { kind, ram: '/t/ram' };
      expect(qemuNetns(tap, launch, jailed)).toEqual({ enter: '/run/netns/hy1t0' });
      // The TAP is only in there: QEMU enters it whether or not it is jailed.
      expect(qemuNetns(tap, launch, { dir: '/j', off: true })).toEqual({ enter: '/run/netns/hy1t0' });
      expect(qemuNetns(user, launch, jailed)).toBeUndefined();
      expect(qemuNetns({ network: { ...tap.network, netns: undefined } }, launch, jailed)).toBeUndefined();
    }
    for (const kind of ['template', 'capture'] as const) {
      expect(qemuNetns(tap, { kind, ram: '/t/ram' }, jailed)).toBe('empty');
      expect(qemuNetns(user, { kind, ram: '/t/ram' }, jailed)).toBe('empty');
      // Not root (no ids), or root that may not make one (no CAP_SYS_ADMIN): none is made.
      expect(qemuNetns(user, { kind, ram: '/t/ram' }, { dir: '/j' })).toBeUndefined();
      expect(qemuNetns(user, { kind, ram: '/t/ram' }, { ...jailed, netns: false })).toBeUndefined();
    }
  });

  test('limits: guest RAM plus QEMU and, under TCG, its translation cache; weight by vCPUs', () => {
    expect(machineLimits({ memoryMiB: 512, cpus: 1, accel: 'tcg' })).toEqual({
      memoryBytes: (512 + 192 + 256) * 1024 * 1024,
      pids: 512,
      cpuWeight: 100,
    });
    expect(machineLimits({ memoryMiB: 1024, cpus: 4, accel: 'kvm' })).toEqual({
      memoryBytes: (1024 + 192) * 1024 * 1024,
      pids: 512,
      cpuWeight: 400,
    });
  });

  test("a machine's cgroup name is its kind and a hash of its directory", () => {
    expect(cgroupName('vm', '/state/vms/web')).toMatch(/^vm-[0-9a-f]{16}$/);
    expect(cgroupName('vm', '/state/vms/web')).not.toBe(cgroupName('vm', '/state/vms/db'));
    expect(cgroupName('capture', '/tmp/x')).toMatch(/^capture-/);
  });

  test('handed disks: an fd set per file, read-only then read-write; the drives name the set, with locks off', () => {
    const spec: MachineSpec = {
      name: 'web',
      dir: '/s/web',
      accel: 'tcg',
      memoryMiB: 256,
      cpus: 1,
      bundle: { version: 'a', kernel: '/b/k', initrd: '/b/i', connect: '/b/c' },
      rootDisk: '/s/web/rootfs.qcow2',
      guestFiles: [],
      ports: [],
      disks: [{ serial: 'vol-data', path: '/s/vol.qcow2', readOnly: true }],
    };
    const fds = new Map([
      ['/s/web/rootfs.qcow2', { set: 1, fds: [5, 6] }],
      ['/s/vol.qcow2', { set: 2, fds: [7] }],
    ]);
    expect(addFdArgs(fds)).toEqual([
      '-add-fd',
      'fd=5,set=1',
      '-add-fd',
      'fd=6,set=1',
      '-add-fd',
      'fd=7,set=2',
    ]);
    const args = qemuArgs(spec, undefined, undefined, undefined, fds);
    const drives = args.flatMap((arg, i) => (arg === '-drive' ? [args[i + 1]] : []));
    expect(drives[0]).toContain('file=/dev/fdset/1,file.locking=off,format=qcow2');
    expect(drives[1]).toContain('file=/dev/fdset/2,file.locking=off,format=qcow2');
    expect(drives.join(' ')).not.toContain('/s/web/rootfs.qcow2');
  });
});

describe('the jail', () => {
  const ids = { uid: 1879048200, gid: 1879048200 };
  test("QEMU's options for the drop and the chroot follow its version: -runas/-chroot, then -run-with", () => {
    expect(jailArgs({ dir: '/j', ids, qemuVersion: '7.2.22' })).toEqual([
      '-runas',
      '1879048200:1879048200',
      '-chroot',
      '/j',
    ]);
    expect(jailArgs({ dir: '/j', ids, qemuVersion: '6.2.0' })).toEqual(jailArgs({ dir: '/j', ids }));
    expect(jailArgs({ dir: '/j', ids, qemuVersion: '8.2.2' })).toEqual([
      '-run-with',
      'chroot=/j',
      '-runas',
      '1879048200:1879048200',
    ]);
    expect(jailArgs({ dir: '/j', ids, qemuVersion: '9.0.0' })).toEqual(
      jailArgs({ dir: '/j', ids, qemuVersion: '8.1.0' }),
    );
    expect(jailArgs({ dir: '/j', ids, qemuVersion: '10.0.2' })).toEqual([
      '-run-with',
      'chroot=/j,user=1879048200:1879048200',
    ]);
    // Not root: nothing to drop, no chroot.
    expect(jailArgs({ dir: '/j' })).toEqual([]);
    expect(jailArgs(undefined)).toEqual([]);
  });

  test('a socket in the jail: from its root once chrooted, else through the short alias', () => {
    expect(pathInJail({ dir: '/deep/vms/web/jail', ids }, '/tmp/hyper-x/j', 'save.sock')).toBe('/save.sock');
    expect(pathInJail({ dir: '/deep/vms/web/jail' }, '/tmp/hyper-x/j', 'save.sock')).toBe(
      '/tmp/hyper-x/j/save.sock',
    );
  });
});

test('the disks are handed after the incoming state and the control connection', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-disks-'));
  try {
    const root = path.join(dir, 'rootfs.qcow2');
    const volume = path.join(dir, 'vol.qcow2');
    for (const file of [root, volume]) await writeFile(file, '');
    const disks = await openDisks({ rootDisk: root, disks: [{ serial: 'v', path: volume, readOnly: true }] });
    try {
      expect([...disks.fds.values()]).toEqual([
        { set: 1, fds: [CONTROL_FD + 1, CONTROL_FD + 2] },
        { set: 2, fds: [CONTROL_FD + 3] },
      ]);
      expect(CONTROL_FD).toBe(INCOMING_FD + 1);
    } finally {
      await disks.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
