import { crashExcerpt, crashReason, parseGuestStatus } from '../../../src/vm/status.js';

describe('parseGuestStatus', () => {
  test.each([
    ['', { template: false, booted: false, halted: false, restarts: 0 }],
    ['booted\n', { template: false, booted: true, halted: false, restarts: 0 }],
    ['booted\nstarted 136\n', { template: false, booted: true, servicePid: 136, halted: false, restarts: 0 }],
    [
      'booted\nstarted 136\nexited 143\nhalted\n',
      { template: false, booted: true, servicePid: 136, exitCode: 143, halted: true, restarts: 0 },
    ],
    [
      'booted\nfailed no disk with serial rootfs\n',
      { template: false, booted: true, failure: 'no disk with serial rootfs', halted: false, restarts: 0 },
    ],
    [
      'booted\nstarted 136\nrestarting 1 3\nstarted 150\nrestarting 2 3\nstarted 161\n',
      { template: false, booted: true, servicePid: 161, halted: false, restarts: 2 },
    ],
    ['template\n', { template: true, booted: false, halted: false, restarts: 0 }],
  ])('%j', (text, expected) => expect(parseGuestStatus(text)).toEqual(expected));
});

describe('a guest that died without its init reporting', () => {
  const console = [
    '[    6.60] hyper-init: service started',
    '[    6.61] sysrq: Trigger a crash',
    '[    6.61] Kernel panic - not syncing: sysrq triggered crash',
    '[    6.61] CPU: 0 PID: 190 Comm: sh Not tainted 6.1.0-41-cloud-amd64 #1  Debian 6.1.158-1',
    ...Array.from({ length: 20 }, (_, i) => `[    6.61]  trace line ${i}`),
    '[    6.62] Kernel Offset: 0xe00000 from 0xffffffff81000000',
  ].join('\n');

  test('a kernel panic is the reason, with what it said', () => {
    expect(crashReason(console)).toBe('kernel panic: sysrq triggered crash');
    expect(crashReason('Kernel panic - not syncing:\n')).toBe('kernel panic');
    expect(crashReason('[ 1.0] reboot: Power down\n')).toBeUndefined();
    expect(crashReason('')).toBeUndefined();
  });

  test('the excerpt starts just before the panic line', () => {
    const lines = crashExcerpt(console).split('\n');
    expect(lines[0]).toBe('[    6.60] hyper-init: service started');
    expect(lines[2]).toBe('[    6.61] Kernel panic - not syncing: sysrq triggered crash');
    // Two lines before it (all there are), the panic line, and twelve after.
    expect(lines).toHaveLength(15);
    expect(crashExcerpt('a\nb\n')).toBe('a\nb');
  });
});
