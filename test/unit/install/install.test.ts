import { kvmUdevCommands } from '../../../src/action/kvm.js';
import {
  cachedAnswer,
  judgeProbe,
  parseAccelChoice,
  PORTABLE_CPU_MODELS,
  probeArgs,
} from '../../../src/install/accel.js';
import { aptCommand, describeTools } from '../../../src/install/tools.js';

test('apt-get goes through sudo -n when not root', () => {
  expect(aptCommand(['install', 'x'], true)).toEqual({ program: 'apt-get', args: ['install', 'x'] });
  expect(aptCommand(['install', 'x'], false)).toEqual({
    program: 'sudo',
    args: ['-n', 'apt-get', 'install', 'x'],
  });
});

test('missing tools are named with their packages', () => {
  expect(describeTools([{ program: 'qemu-img', aptPackage: 'qemu-utils' }])).toBe(
    'qemu-img (package qemu-utils)',
  );
});

test('accel choices', () => {
  expect(parseAccelChoice(undefined, 'x')).toBe('auto');
  expect(parseAccelChoice(' kvm ', 'x')).toBe('kvm');
  expect(() => parseAccelChoice('hvf', 'input "accel"')).toThrow(
    'input "accel": "hvf" is not an accelerator; use auto, kvm or tcg',
  );
});

test('the KVM probe boots our kernel and powers off at once', () => {
  const args = probeArgs({ version: 'v', kernel: '/k', initrd: '/i', connect: '/c' }, '/tmp/c');
  expect(args.slice(0, 4)).toEqual(['-M', 'microvm,x-option-roms=off', '-accel', 'kvm']);
  expect(args).toEqual(expect.arrayContaining(['-kernel', '/k', '-initrd', '/i', '-serial', 'file:/tmp/c']));
  expect(args[args.indexOf('-append') + 1]).toBe('console=ttyS0 panic=-1 rdinit=/bin/poweroff -- -f');
  expect(args[args.indexOf('-cpu') + 1]).toBe('host');
  const model = probeArgs(
    { version: 'v', kernel: '/k', initrd: '/i', connect: '/c' },
    '/tmp/c',
    'Haswell-v4',
  );
  expect(model[model.indexOf('-cpu') + 1]).toBe('Haswell-v4,enforce');
  expect(args).not.toContain('-runas');
  expect(args[args.indexOf('-sandbox') + 1]).toContain('elevateprivileges=deny,spawn=deny');
});

test('as root the probe drops to its id once it has opened /dev/kvm, chrooted into its empty directory', () => {
  const args = probeArgs(
    { version: 'v', kernel: '/k', initrd: '/i', connect: '/c' },
    '/tmp/probe-x/console',
    undefined,
    {
      uid: 1879113727,
      gid: 1879113727,
    },
  );
  expect(args[args.indexOf('-runas') + 1]).toBe('1879113727:1879113727');
  expect(args[args.indexOf('-chroot') + 1]).toBe('/tmp/probe-x');
  // QEMU drops with setuid after its filter is in place: the filter must let it.
  expect(args[args.indexOf('-sandbox') + 1]).toBe(
    'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny',
  );
});

test('the portable models never mix vendors, and are versioned names that do not move with machine types', () => {
  expect(Object.keys(PORTABLE_CPU_MODELS).sort()).toEqual(['AuthenticAMD', 'GenuineIntel']);
  expect(PORTABLE_CPU_MODELS.GenuineIntel?.every((m) => /^Haswell-v\d$/.test(m))).toBe(true);
  expect(PORTABLE_CPU_MODELS.AuthenticAMD?.every((m) => /^EPYC-v\d$/.test(m))).toBe(true);
});

test('the KVM udev rule is the one GitHub documents', () => {
  const commands = kvmUdevCommands(false);
  expect(commands[0]).toEqual({
    program: 'sudo',
    args: [
      '-n',
      'sh',
      '-c',
      `echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' > /etc/udev/rules.d/99-hyper-services-kvm.rules`,
    ],
  });
  expect(commands.slice(1)).toEqual([
    { program: 'sudo', args: ['-n', 'udevadm', 'control', '--reload-rules'] },
    { program: 'sudo', args: ['-n', 'udevadm', 'trigger', '--name-match=kvm'] },
  ]);
});

describe('judging the KVM test boot', () => {
  const powerDown = '[    0.51] reboot: Power down\n';
  test.each([
    [{ end: { exitCode: 0 }, stderr: '', console: powerDown }, undefined],
    [
      {
        end: { signal: 'SIGABRT' },
        stderr: 'error: failed to set MSR 0x10a\nAssertion `ret == 1` failed.',
        console: '',
      },
      'a KVM test boot failed: QEMU was killed by SIGABRT: error: failed to set MSR 0x10a\nAssertion `ret == 1` failed.',
    ],
    [
      { end: { signal: 'SIGSEGV' }, stderr: '', console: undefined },
      'a KVM test boot failed: QEMU was killed by SIGSEGV',
    ],
    [
      { end: { exitCode: 1 }, stderr: 'no KVM\n', console: '' },
      'a KVM test boot failed: QEMU exited with code 1: no KVM',
    ],
    [
      { end: { timedOutMs: 6000 }, stderr: '', console: '' },
      'a KVM test boot failed: the guest did not power off within 6 s',
    ],
    [
      { end: { exitCode: 0 }, stderr: '', console: '' },
      'a KVM test boot failed: QEMU exited, but the guest printed nothing',
    ],
    [
      { end: { exitCode: 0 }, stderr: '', console: undefined },
      'a KVM test boot failed: QEMU exited, but its console could not be read',
    ],
    [
      { end: { exitCode: 0 }, stderr: '', console: 'Kernel panic\nreboot: Restarting system\n' },
      'a KVM test boot failed: QEMU exited, but the guest did not power off cleanly: Kernel panic\nreboot: Restarting system',
    ],
    [
      { end: { startError: 'EACCES' }, stderr: '', console: undefined },
      'a KVM test boot failed: QEMU could not be started (EACCES)',
    ],
  ])('%j', (outcome, expected) => {
    expect(judgeProbe(outcome)).toBe(expected);
  });

  test('a cached answer counts only for the same key and until it expires; a damaged cache file is a miss', () => {
    expect(cachedAnswer('{"key":"k","failure":null}', 'k', 0)).toEqual({ failure: undefined });
    expect(cachedAnswer('{"key":"k","failure":"why"}', 'k', 0)).toEqual({ failure: 'why' });
    expect(cachedAnswer('{"key":"k","failure":null,"cpuModel":"EPYC-v2"}', 'k', 0)).toEqual({
      failure: undefined,
      cpuModel: 'EPYC-v2',
    });
    expect(cachedAnswer('{"key":"other","failure":null}', 'k', 0)).toBeUndefined();
    expect(cachedAnswer('{"key":"k","fail', 'k', 0)).toBeUndefined();
    expect(cachedAnswer('', 'k', 0)).toBeUndefined();
    // A hung boot is trusted for an hour, then probed again.
    const hung = '{"key":"k","failure":"the guest did not power off within 6 s","expires":1000}';
    expect(cachedAnswer(hung, 'k', 999)).toEqual({ failure: 'the guest did not power off within 6 s' });
    expect(cachedAnswer(hung, 'k', 1000)).toBeUndefined();
  });
});
