import { healthcheckArgv, listeningTcpPorts } from '../../src/engine/health.js';
import { cpuTicks, parseSmapsRollup, peakRssKiB } from '../../src/engine/usage.js';

test('listening TCP ports from /proc/net/tcp and tcp6', () => {
  const text = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1234 1',
    '   1: 0100007F:0050 0F02000A:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 1235 1',
    '   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 999 0 77 1',
  ].join('\n');
  expect([...listeningTcpPorts(text)].sort()).toEqual([5432, 6379]);
});

test('healthcheck tests run in the container, CMD-SHELL through /bin/sh -c', () => {
  const record = { user: 'postgres', workdir: '/' };
  expect(healthcheckArgv(record, ['CMD', 'redis-cli', 'ping']).slice(-3)).toEqual([
    '--',
    'redis-cli',
    'ping',
  ]);
  expect(healthcheckArgv(record, ['CMD-SHELL', 'pg_isready -U postgres']).slice(-4)).toEqual([
    '--',
    '/bin/sh',
    '-c',
    'pg_isready -U postgres',
  ]);
  expect(() => healthcheckArgv(record, ['NONE'])).toThrow(
    'healthcheck test must start with CMD or CMD-SHELL, not "NONE"',
  );
});

test('CPU ticks and peak memory from /proc', () => {
  const stat =
    '4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 30000 0 0 0 250 75 0 0 20 0 5 0 1000 1000000 60000';
  expect(cpuTicks(stat)).toBe(325);
  expect(cpuTicks('7 (a (b) c) S 1 1 1 0 -1 0 0 0 0 0 10 5 0 0')).toBe(15);
  expect(peakRssKiB('Name:\tqemu\nVmHWM:\t  268220 kB\nVmRSS:\t 260000 kB\n')).toBe(268220);
});

test('a hyper VM is known by its fw_cfg settings, and its state dir by its pidfile', async () => {
  const { vmDirOfCmdline } = await import('../../src/engine/orphans.js');
  const ours = [
    'qemu-system-x86_64',
    '-name',
    'db',
    '-pidfile',
    '/tmp/job/hyper/vms/db/qemu.pid',
    '-fw_cfg',
    'name=opt/hyper/settings,file=/x',
  ];
  expect(vmDirOfCmdline(ours.join('\0'))).toBe('/tmp/job/hyper/vms/db');
  const foreign = ['qemu-system-x86_64', '-pidfile', '/var/run/other.pid', '-hda', 'disk.img'];
  expect(vmDirOfCmdline(foreign.join('\0'))).toBeUndefined();
  expect(vmDirOfCmdline(['bash', '-c', 'name=opt/hyper/settings,'].join('\0'))).toBeUndefined();
});

test('parseSmapsRollup: resident, proportional and own (anonymous) memory in MiB', () => {
  const rollup = [
    '55d0c0a00000-7ffd3b9fe000 ---p 00000000 00:00 0                          [rollup]',
    'Rss:              150630 kB',
    'Pss:              120340 kB',
    'Pss_Anon:          91750 kB',
    'Private_Dirty:     91750 kB',
    'Anonymous:         91750 kB',
    'Swap:                  0 kB',
  ].join('\n');
  expect(parseSmapsRollup(rollup)).toEqual({ rssMiB: 147.1, pssMiB: 117.5, ownMiB: 89.6 });
});
