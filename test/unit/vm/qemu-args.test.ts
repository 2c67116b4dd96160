import {
  CONTROL_FD,
  DISK_SLOTS,
  fitsSlots,
  hasControlPort,
  type Launch,
  optValue,
  qemuArgs,
} from '../../../src/vm/qemu/args.js';
import { virtiofsdArgv } from '../../../src/vm/qemu/virtiofs.js';
import type { MachineSpec } from '../../../src/vm/hypervisor.js';

const spec: MachineSpec = {
  name: 'web',
  dir: '/state/vms/web',
  accel: 'tcg',
  memoryMiB: 256,
  cpus: 2,
  bundle: { version: 'abc', kernel: '/b/vmlinuz', initrd: '/b/initrd.img', connect: '/b/hyper-connect' },
  rootDisk: '/state/vms/web/rootfs.qcow2',
  guestFiles: [{ name: 'settings', path: '/state/vms/web/guest/settings' }],
  ports: [
    { protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, guestPort: 80 },
    { protocol: 'udp', hostIp: '0.0.0.0', hostPort: 5353, guestPort: 53 },
  ],
};

function valueOf(args: string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1] as string] : []));
}

describe('qemuArgs', () => {
  const args = qemuArgs(spec);

  test('uses the microvm machine without option ROMs', () => {
    expect(valueOf(args, '-M')).toEqual(['microvm,x-option-roms=off,rtc=on']);
    expect(args).toEqual(expect.arrayContaining(['-nodefaults', '-no-user-config', '-no-reboot']));
  });

  test('every launch is under the seccomp sandbox; spawning only where slirp starts helpers, privilege changes only there or for -runas', () => {
    const tap = { kind: 'tap' as const, ifname: 'hy0', mac: '52:54:00:00:00:01' };
    const forwards = {
      kind: 'user' as const,
      restrict: true,
      guestForwards: [{ address: '10.0.2.100', port: 5432, hostPort: 40000 }],
      connect: '/b/hyper-connect',
    };
    const strict = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';
    const jail = { dir: '/state/vms/web/jail', ids: { uid: 1879048200, gid: 1879048200 } };
    for (const launch of [
      undefined,
      { kind: 'clone' as const, ram: '/t/ram' },
      { kind: 'template' as const, ram: '/t/ram' },
      { kind: 'capture' as const, ram: '/t/ram' },
    ]) {
      expect(valueOf(qemuArgs({ ...spec, network: tap }, undefined, launch), '-sandbox')).toEqual([strict]);
      // User networking with no other service to reach starts no helper.
      expect(valueOf(qemuArgs(spec, undefined, launch), '-sandbox')).toEqual([strict]);
      expect(valueOf(qemuArgs({ ...spec, network: tap }, undefined, launch, jail), '-sandbox')).toEqual([
        'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny',
      ]);
    }
    for (const launch of [undefined, { kind: 'clone' as const, ram: '/t/ram' }])
      expect(valueOf(qemuArgs({ ...spec, network: forwards }, undefined, launch), '-sandbox')).toEqual([
        'on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny',
      ]);
    // A template's and a capture machine's NIC has no helper to start.
    expect(
      valueOf(
        qemuArgs({ ...spec, network: forwards }, undefined, { kind: 'template', ram: '/t/ram' }),
        '-sandbox',
      ),
    ).toEqual([strict]);
  });

  test('a jailed QEMU drops to its ids and chroots into its jail, and runs the helper linked there', () => {
    const forwards = {
      kind: 'user' as const,
      restrict: true,
      guestForwards: [{ address: '10.0.2.100', port: 5432, hostPort: 40000 }],
      connect: '/b/hyper-connect',
    };
    const jail = { dir: '/state/vms/web/jail', ids: { uid: 1879048200, gid: 1879048201 } };
    const jailed = qemuArgs({ ...spec, network: forwards }, undefined, undefined, jail);
    expect(valueOf(jailed, '-runas')).toEqual(['1879048200:1879048201']);
    expect(valueOf(jailed, '-chroot')).toEqual(['/state/vms/web/jail']);
    expect(valueOf(jailed, '-netdev')[0]).toContain(
      'guestfwd=tcp:10.0.2.100:5432-cmd:/hyper-connect 127.0.0.1 40000',
    );
    // Not root: nothing to drop, and QEMU runs the helper where it is.
    const plain = qemuArgs({ ...spec, network: forwards }, undefined, undefined, {
      dir: '/state/vms/web/jail',
    });
    expect(plain).not.toContain('-runas');
    expect(plain).not.toContain('-chroot');
    expect(valueOf(plain, '-netdev')[0]).toContain('-cmd:/b/hyper-connect 127.0.0.1 40000');
  });

  test('TCG gets multi-threaded TCG and the max CPU model; KVM gets the probed model, enforced, else the host CPU', () => {
    expect(valueOf(args, '-accel')).toEqual(['tcg,thread=multi,tb-size=256']);
    expect(valueOf(args, '-cpu')).toEqual(['max']);
    expect(valueOf(qemuArgs({ ...spec, cpuModel: 'Haswell-v4' }), '-cpu')).toEqual(['max']);
    const kvm = qemuArgs({ ...spec, accel: 'kvm' });
    expect(valueOf(kvm, '-accel')).toEqual(['kvm']);
    expect(valueOf(kvm, '-cpu')).toEqual(['host']);
    expect(valueOf(qemuArgs({ ...spec, accel: 'kvm', cpuModel: 'EPYC-v2' }), '-cpu')).toEqual([
      'EPYC-v2,enforce',
    ]);
  });

  test('under TCG the kernel is told the TSC frequency; under KVM it is not', () => {
    expect(valueOf(qemuArgs(spec, 2600000), '-append')).toEqual([
      'console=ttyS0 quiet panic=-1 reboot=t pci=off cryptomgr.notests tsc_early_khz=2600000',
    ]);
    expect(valueOf(qemuArgs({ ...spec, accel: 'kvm' }, 2600000), '-append')).toEqual([
      'console=ttyS0 quiet panic=-1 reboot=t pci=off cryptomgr.notests',
    ]);
  });

  test('memory and cpus', () => {
    expect(valueOf(args, '-m')).toEqual(['256M']);
    expect(valueOf(args, '-smp')).toEqual(['2']);
  });

  test('kernel, initrd and the console log file', () => {
    expect(valueOf(args, '-kernel')).toEqual(['/b/vmlinuz']);
    expect(valueOf(args, '-initrd')).toEqual(['/b/initrd.img']);
    expect(valueOf(args, '-serial')).toEqual(['file:/state/vms/web/console.log']);
    expect(valueOf(args, '-pidfile')).toEqual(['/state/vms/web/qemu.pid']);
  });

  test('the root disk is the qcow2 overlay on virtio-blk with the serial the init looks for', () => {
    expect(valueOf(args, '-drive')).toEqual([
      'id=root,node-name=root-disk,file=/state/vms/web/rootfs.qcow2,format=qcow2,if=none,discard=unmap',
    ]);
    expect(valueOf(args, '-device')).toContain('virtio-blk-device,drive=root,serial=rootfs');
  });

  test('volume disks: named block nodes for QMP, serials for the guest, read-only ones without discard', () => {
    const withDisks = qemuArgs({
      ...spec,
      disks: [
        { serial: 'vol0', path: '/state/volumes/pgdata.qcow2', readOnly: false },
        { serial: 'vol1', path: '/state/vms/web/disks/vol1.qcow2', readOnly: true },
      ],
    });
    expect(valueOf(withDisks, '-drive').slice(1)).toEqual([
      'id=vol0,node-name=vol0-disk,file=/state/volumes/pgdata.qcow2,format=qcow2,if=none,discard=unmap',
      'id=vol1,node-name=vol1-disk,file=/state/vms/web/disks/vol1.qcow2,format=qcow2,if=none,read-only=on',
    ]);
    expect(valueOf(withDisks, '-device')).toEqual(
      expect.arrayContaining([
        'virtio-blk-device,drive=vol0,serial=vol0',
        'virtio-blk-device,drive=vol1,serial=vol1',
      ]),
    );
  });

  test('QMP, guest agent, log and status channels', () => {
    expect(valueOf(args, '-qmp')).toEqual(['unix:/state/vms/web/qmp.sock,server=on,wait=off']);
    expect(valueOf(args, '-chardev')).toEqual([
      'file,id=log,path=/state/vms/web/service.log,append=on',
      'file,id=status,path=/state/vms/web/status,append=on',
      'socket,id=qga,path=/state/vms/web/agent.sock,server=on,wait=off',
    ]);
    expect(valueOf(args, '-device')).toEqual(
      expect.arrayContaining([
        'virtserialport,chardev=log,name=hyper.log',
        'virtserialport,chardev=status,name=hyper.status',
        'virtserialport,chardev=qga,name=org.qemu.guest_agent.0',
      ]),
    );
  });

  test('published ports become user-network host forwards', () => {
    expect(valueOf(args, '-netdev')).toEqual([
      'user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53',
    ]);
  });

  test('guest files go through fw_cfg under opt/hyper/', () => {
    expect(valueOf(args, '-fw_cfg')).toEqual(['name=opt/hyper/settings,file=/state/vms/web/guest/settings']);
  });

  test('commas in paths are doubled, as QEMU option syntax needs', () => {
    expect(optValue('/a,b/c')).toBe('/a,,b/c');
    const odd = qemuArgs({ ...spec, rootDisk: '/x,y/root.qcow2' });
    expect(valueOf(odd, '-drive')[0]).toContain('file=/x,,y/root.qcow2,');
  });
});

describe('relayed sockets', () => {
  test('a VM given the Docker socket gets one virtio-serial port for it, served by QEMU at relay.sock', () => {
    const args = qemuArgs({ ...spec, relaySockets: ['/var/run/docker.sock'] });
    expect(valueOf(args, '-chardev')).toContain(
      'socket,id=relay,path=/state/vms/web/relay.sock,server=on,wait=off',
    );
    expect(valueOf(args, '-device')).toContain('virtserialport,chardev=relay,name=hyper.relay');
  });

  test('a VM without them has no such port', () => {
    expect(qemuArgs(spec).join(' ')).not.toContain('relay');
  });
});

describe('shared host directories', () => {
  const shared = qemuArgs({
    ...spec,
    shares: [
      { tag: 'share0', source: '/home/runner/work', readOnly: false },
      { tag: 'share1', source: '/opt/tools', readOnly: true },
    ],
  });

  test("put the guest's RAM in shared memory and connect each virtiofsd by its socket", () => {
    expect(valueOf(shared, '-M')).toEqual(['microvm,x-option-roms=off,rtc=on,memory-backend=ram']);
    expect(valueOf(shared, '-object')).toEqual(['memory-backend-memfd,id=ram,size=256M,share=on']);
    expect(valueOf(shared, '-chardev')).toEqual(
      expect.arrayContaining([
        'socket,id=fs0,path=/state/vms/web/fs0.sock',
        'socket,id=fs1,path=/state/vms/web/fs1.sock',
      ]),
    );
    expect(valueOf(shared, '-device')).toEqual(
      expect.arrayContaining([
        'vhost-user-fs-device,chardev=fs0,tag=share0,queue-size=1024',
        'vhost-user-fs-device,chardev=fs1,tag=share1,queue-size=1024',
      ]),
    );
  });

  test('leave a VM without shares on private memory', () => {
    expect(valueOf(qemuArgs(spec), '-object')).toEqual([]);
  });
});

describe('virtiofsdArgv', () => {
  test('serves a read-write share from its own mount namespace', () => {
    expect(virtiofsdArgv({ tag: 'share0', source: '/w', readOnly: false }, '/d/fs0.sock', '/v')).toEqual([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'shift && exec "$@"',
      'sh',
      '/w',
      '/v',
      '--socket-path=/d/fs0.sock',
      '-o',
      'source=/w',
      '-o',
      'cache=auto',
      '-o',
      'xattr',
      '-o',
      'announce_submounts',
    ]);
  });

  test('binds a read-only share read-only over itself first, inside that namespace only', () => {
    const argv = virtiofsdArgv({ tag: 'share0', source: '/w', readOnly: true }, '/d/fs0.sock', '/v');
    expect(argv[6]).toBe('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"');
    expect(argv.slice(7, 10)).toEqual(['sh', '/w', '/v']);
  });
});

/** The -device values: what a clone must share with its template, in order. */
function devicesOf(args: string[]): string[] {
  return valueOf(args, '-device');
}

describe('free-page reporting', () => {
  const balloon = 'virtio-balloon-device,free-page-reporting=on';
  const slotted: MachineSpec = { ...spec, slots: 3 };

  test('a VM that can never be a template, clone or checkpoint (no slots) hands its free pages back', () => {
    expect(devicesOf(qemuArgs(spec))).toContain(balloon);
    const shared = { ...spec, shares: [{ tag: 'share0', source: '/src', readOnly: true }] };
    expect(devicesOf(qemuArgs(shared))).toContain(balloon);
  });

  test('no VM whose RAM is, or may become, a file that others map has it', () => {
    expect(devicesOf(qemuArgs(slotted))).not.toContain(balloon);
    for (const kind of ['template', 'clone', 'capture'] as const)
      expect(devicesOf(qemuArgs(slotted, undefined, { kind, ram: '/r' }))).not.toContain(balloon);
  });
});

describe('the boot-template layout (slots)', () => {
  const slotted: MachineSpec = {
    ...spec,
    slots: 3,
    disks: [{ serial: 'vol0', path: '/state/volumes/pgdata.qcow2', readOnly: false }],
  };

  test('a booted VM fills its slots with its disks, then empty null devices, in a fixed order', () => {
    const args = qemuArgs(slotted);
    expect(valueOf(args, '-drive')).toEqual([
      'id=root,node-name=root-disk,file=/state/vms/web/rootfs.qcow2,format=qcow2,if=none,discard=unmap',
      'id=vol0,node-name=vol0-disk,file=/state/volumes/pgdata.qcow2,format=qcow2,if=none,discard=unmap',
    ]);
    expect(valueOf(args, '-blockdev')).toEqual([
      'driver=null-co,node-name=slot1,size=0,read-only=on',
      'driver=null-co,node-name=slot2,size=0,read-only=on',
    ]);
    expect(devicesOf(args).slice(0, 4)).toEqual([
      'virtio-blk-device,drive=root,serial=rootfs',
      'virtio-blk-device,drive=vol0,serial=vol0',
      'virtio-blk-device,drive=slot1,serial=slot1',
      'virtio-blk-device,drive=slot2,serial=slot2',
    ]);
  });

  test('it always has the relay port, its RAM as a named backend, and its settings in fw_cfg', () => {
    const args = qemuArgs(slotted);
    expect(devicesOf(args)).toContain('virtserialport,chardev=relay,name=hyper.relay');
    expect(valueOf(args, '-M')).toEqual(['microvm,x-option-roms=off,rtc=on,memory-backend=ram']);
    expect(valueOf(args, '-object')).toEqual(['memory-backend-ram,id=ram,size=256M']);
    // The marker first: the init starts its reader on the port (a checkpoint of it resumes there).
    expect(valueOf(args, '-fw_cfg')).toEqual([
      'name=opt/hyper/control,string=1',
      'name=opt/hyper/settings,file=/state/vms/web/guest/settings',
    ]);
    expect(args).not.toContain('-incoming');
    // Without the port there is nothing to mark.
    expect(valueOf(qemuArgs(spec), '-fw_cfg').filter((value) => value.includes('opt/hyper/control'))).toEqual(
      [],
    );
  });

  test("a template and a clone have hyper's control connection on hyper.control; a booted VM's port has none", () => {
    const control = (launch?: Launch): string[] => {
      const args = qemuArgs(slotted, undefined, launch);
      return valueOf(args, '-chardev').filter((value) => value.includes('id=control'));
    };
    expect(control({ kind: 'template', ram: '/cache/t/ram' })).toEqual([
      `socket,id=control,fd=${CONTROL_FD}`,
    ]);
    expect(control({ kind: 'clone', ram: '/cache/t/ram' })).toEqual([`socket,id=control,fd=${CONTROL_FD}`]);
    expect(control({ kind: 'capture', ram: '/cache/c/ram' })).toEqual(['null,id=control']);
    expect(control()).toEqual(['null,id=control']);
    expect(devicesOf(qemuArgs(slotted))).toContain('virtserialport,chardev=control,name=hyper.control');
    // Without the template layout there is no port, and no connection to give it.
    expect(devicesOf(qemuArgs(spec))).not.toContain('virtserialport,chardev=control,name=hyper.control');
    expect(hasControlPort(spec, { kind: 'clone', ram: '/r' })).toBe(false);
    expect(hasControlPort(slotted, { kind: 'clone', ram: '/r' })).toBe(true);
    expect(hasControlPort(slotted, { kind: 'boot' })).toBe(false);
  });

  test('a template has the same devices in the same order, empty, and a NIC without a backend', () => {
    const template = qemuArgs({ ...slotted, disks: [] }, undefined, {
      kind: 'template',
      ram: '/cache/t/ram',
    });
    const clone = qemuArgs(slotted, undefined, { kind: 'clone', ram: '/cache/t/ram' });
    const kinds = (devices: string[]): string[] => devices.map((d) => d.split(',')[0] ?? '');
    expect(kinds(devicesOf(template))).toEqual(kinds(devicesOf(clone)));
    expect(devicesOf(template)).toContain('virtio-net-device,mac=52:54:00:12:34:56');
    expect(template).not.toContain('-netdev');
    expect(valueOf(template, '-drive')).toEqual([]);
    expect(valueOf(template, '-blockdev')).toEqual([
      'driver=null-co,node-name=root,size=0,read-only=on',
      'driver=null-co,node-name=slot0,size=0,read-only=on',
      'driver=null-co,node-name=slot1,size=0,read-only=on',
      'driver=null-co,node-name=slot2,size=0,read-only=on',
    ]);
    expect(valueOf(template, '-object')).toEqual([
      'memory-backend-file,id=ram,size=256M,mem-path=/cache/t/ram,share=on',
    ]);
  });

  test('a clone maps the template RAM privately, waits for its device state, and gets no fw_cfg settings', () => {
    const clone = qemuArgs(slotted, undefined, { kind: 'clone', ram: '/cache/t/ram' });
    expect(valueOf(clone, '-object')).toEqual([
      'memory-backend-file,id=ram,size=256M,mem-path=/cache/t/ram,share=off',
    ]);
    expect(valueOf(clone, '-incoming')).toEqual(['defer']);
    expect(valueOf(clone, '-fw_cfg')).toEqual(['name=opt/hyper/template,string=1']);
    expect(valueOf(clone, '-netdev')).toHaveLength(1);
  });

  test('a clone on QEMU 8.2 or later opens the RAM file read-only and still writes its private copy', () => {
    const clone = qemuArgs(slotted, undefined, { kind: 'clone', ram: '/cache/t/ram', readOnlyOpen: true });
    expect(valueOf(clone, '-object')).toEqual([
      'memory-backend-file,id=ram,size=256M,mem-path=/cache/t/ram,share=off,readonly=on,rom=off',
    ]);
  });

  test("a capture machine has the VM's devices, none of its disks, its RAM in a shared file, and never runs", () => {
    const capture = qemuArgs(slotted, undefined, {
      kind: 'capture',
      ram: '/state/vms/web/checkpoints/c.partial-1/ram',
    });
    const kinds = (devices: string[]): string[] => devices.map((d) => d.split(',')[0] ?? '');
    expect(kinds(devicesOf(capture))).toEqual(kinds(devicesOf(qemuArgs(slotted))));
    expect(valueOf(capture, '-drive')).toEqual([]);
    expect(valueOf(capture, '-object')).toEqual([
      'memory-backend-file,id=ram,size=256M,mem-path=/state/vms/web/checkpoints/c.partial-1/ram,share=on',
    ]);
    expect(capture).toContain('-S');
    expect(valueOf(capture, '-incoming')).toEqual(['defer']);
    // A user-mode VM's slirp state loads only into a user-mode backend; nothing is forwarded.
    expect(valueOf(capture, '-netdev')).toEqual(['user,id=net0,restrict=on']);
  });

  test("a TAP VM's capture machine has a TAP of QEMU's own, on no bridge", () => {
    const tap: MachineSpec = {
      ...slotted,
      network: { kind: 'tap', ifname: 'hy3a2b1', mac: '02:00:0a:00:00:02' },
    };
    expect(valueOf(qemuArgs(tap, undefined, { kind: 'capture', ram: '/r' }), '-netdev')).toEqual([
      'tap,id=net0,script=no,downscript=no',
    ]);
  });

  test('VMs with live shares or more disks than slots cannot be clones', () => {
    expect(fitsSlots({ shares: [{ tag: 's', source: '/w', readOnly: false }] })).toBe(false);
    const disks = Array.from({ length: DISK_SLOTS + 1 }, (_, i) => ({
      serial: `d${i}`,
      path: `/d${i}`,
      readOnly: false,
    }));
    expect(fitsSlots({ disks })).toBe(false);
    expect(fitsSlots({ disks: disks.slice(1) })).toBe(true);
  });
});
