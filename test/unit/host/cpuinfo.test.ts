import { createHash } from 'node:crypto';
import {
  cpuIdentity,
  DEFAULT_TSC_KHZ,
  guestTscKhz,
  parseCpuInfo,
  type TscSource,
} from '../../../src/host/cpuinfo.js';
import { hostFixture } from './fixture.js';

/** How checkpoint records named the host CPU before parseCpuInfo: they must still compare equal. */
function recordedBefore(text: string): string {
  const first = text.split('\n\n')[0] ?? '';
  const field = (key: string) => new RegExp(`^${key}\\s*: (.*)$`, 'm').exec(first)?.[1] ?? '';
  const flags = createHash('sha256').update(field('flags')).digest('hex').slice(0, 12);
  return `host ${field('model name')} (flags ${flags})`;
}

const without = (text: string, ...keys: string[]) =>
  text
    .split('\n')
    .filter((line) => !keys.some((key) => line.startsWith(key)))
    .join('\n');

describe('parseCpuInfo', () => {
  test.each([
    [
      'cpuinfo-intel-xeon-vm.txt',
      { vendor: 'GenuineIntel', family: '6', model: '167', modelName: 'Intel(R) Xeon(R) Processor' },
      { mhz: 2599.998, bogomips: 5199.99 },
    ],
    [
      'cpuinfo-intel-xeon-8272cl.txt',
      {
        vendor: 'GenuineIntel',
        family: '6',
        model: '85',
        modelName: 'Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz',
      },
      { mhz: 2593.906, bogomips: 5187.81 },
    ],
    [
      'cpuinfo-amd-epyc-7763.txt',
      { vendor: 'AuthenticAMD', family: '25', model: '1', modelName: 'AMD EPYC 7763 64-Core Processor' },
      { mhz: 2445.406, bogomips: 4890.81 },
    ],
    [
      'cpuinfo-amd-epyc-7763-no-mhz.txt',
      { vendor: 'AuthenticAMD', family: '25', model: '1', modelName: 'AMD EPYC 7763 64-Core Processor' },
      { mhz: undefined, bogomips: 4890.81 },
    ],
    [
      'cpuinfo-arm64-neoverse-n1.txt',
      { vendor: 'implementer 0x41', family: '8', model: '0xd0c', modelName: undefined },
      { mhz: undefined, bogomips: 243.75 },
    ],
  ])('%s', (file, identity, clock) => {
    const info = parseCpuInfo(hostFixture(file));
    expect(info).toMatchObject({ ...identity, ...clock });
    expect(info.flagsDigest).toMatch(/^[0-9a-f]{12}$/);
    expect(info.flags?.split(' ').length).toBeGreaterThan(10);
  });

  test('only the first processor counts', () => {
    const text = hostFixture('cpuinfo-amd-epyc-7763.txt').replace(
      /model name\t: AMD/g,
      (m, offset: number) => (offset > 200 ? 'model name\t: OTHER' : m),
    );
    expect(parseCpuInfo(text).modelName).toBe('AMD EPYC 7763 64-Core Processor');
  });

  test('empty or unreadable text gives undefined fields and the digest of no flags', () => {
    expect(parseCpuInfo('')).toEqual({
      vendor: undefined,
      family: undefined,
      model: undefined,
      modelName: undefined,
      flags: undefined,
      flagsDigest: createHash('sha256').update('').digest('hex').slice(0, 12),
      mhz: undefined,
      bogomips: undefined,
    });
    expect(parseCpuInfo('garbage without colons\n\n\n').modelName).toBeUndefined();
  });

  test('a cpu MHz that is not a number is left out', () => {
    expect(parseCpuInfo('cpu MHz\t\t: unknown\n').mhz).toBeUndefined();
    expect(parseCpuInfo('cpu MHz\t\t: 0.000\n').mhz).toBe(0);
  });
});

describe('cpuIdentity (the host CPU recorded with KVM checkpoints)', () => {
  test.each([
    'cpuinfo-intel-xeon-vm.txt',
    'cpuinfo-intel-xeon-8272cl.txt',
    'cpuinfo-amd-epyc-7763.txt',
    'cpuinfo-amd-epyc-7763-no-mhz.txt',
  ])('%s: the same string checkpoint records already hold', (file) => {
    const text = hostFixture(file);
    expect(cpuIdentity(parseCpuInfo(text))).toBe(recordedBefore(text));
  });

  test('the cpu MHz line does not change it (it varies between hosts of one model)', () => {
    expect(cpuIdentity(parseCpuInfo(hostFixture('cpuinfo-amd-epyc-7763.txt')))).toBe(
      cpuIdentity(parseCpuInfo(hostFixture('cpuinfo-amd-epyc-7763-no-mhz.txt'))),
    );
  });

  test('different CPUs differ', () => {
    const ids = [
      'cpuinfo-intel-xeon-vm.txt',
      'cpuinfo-intel-xeon-8272cl.txt',
      'cpuinfo-amd-epyc-7763.txt',
      'cpuinfo-arm64-neoverse-n1.txt',
    ].map((file) => cpuIdentity(parseCpuInfo(hostFixture(file))));
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('without a model name: vendor, family and model stand in', () => {
    const info = parseCpuInfo(hostFixture('cpuinfo-arm64-neoverse-n1.txt'));
    expect(cpuIdentity(info)).toBe(`host implementer 0x41 family 8 model 0xd0c (flags ${info.flagsDigest})`);
    const amd = without(hostFixture('cpuinfo-amd-epyc-7763.txt'), 'model name');
    expect(cpuIdentity(parseCpuInfo(amd))).toMatch(
      /^host AuthenticAMD family 25 model 1 \(flags [0-9a-f]{12}\)$/,
    );
  });

  test('nothing known: "unknown CPU", never an error', () => {
    expect(cpuIdentity(parseCpuInfo(''))).toBe('host unknown CPU (flags e3b0c44298fc)');
  });
});

describe('guestTscKhz (tsc_early_khz under TCG)', () => {
  const amd = hostFixture('cpuinfo-amd-epyc-7763.txt');
  const cases: [string, string, string, number, TscSource][] = [
    ['Intel VM', hostFixture('cpuinfo-intel-xeon-vm.txt'), 'x64', 2_599_995, 'bogomips'],
    ['Intel @ GHz', hostFixture('cpuinfo-intel-xeon-8272cl.txt'), 'x64', 2_593_905, 'bogomips'],
    ['AMD EPYC', amd, 'x64', 2_445_405, 'bogomips'],
    [
      'AMD EPYC without cpu MHz',
      hostFixture('cpuinfo-amd-epyc-7763-no-mhz.txt'),
      'x64',
      2_445_405,
      'bogomips',
    ],
    // Bare metal: cpu MHz is the current clock (idle here), bogomips still the TSC.
    ['AMD bare metal, idle core', amd.replace(/2445\.406/g, '1500.000'), 'x64', 2_445_405, 'bogomips'],
    ['no bogomips: cpu MHz', without(amd, 'bogomips'), 'x64', 2_445_406, 'cpu MHz'],
    [
      'no bogomips, cpu MHz 0.000: the default',
      without(amd, 'bogomips').replace(/2445\.406/g, '0.000'),
      'x64',
      DEFAULT_TSC_KHZ,
      'default',
    ],
    [
      'no bogomips nor cpu MHz: the Intel model name',
      without(hostFixture('cpuinfo-intel-xeon-8272cl.txt'), 'bogomips', 'cpu MHz'),
      'x64',
      2_600_000,
      'model name',
    ],
    [
      'no bogomips nor cpu MHz, no GHz in the name',
      without(hostFixture('cpuinfo-intel-xeon-vm.txt'), 'bogomips', 'cpu MHz'),
      'x64',
      DEFAULT_TSC_KHZ,
      'default',
    ],
    [
      'implausible bogomips (a misread) is skipped',
      amd.replace(/4890\.81/g, '12.00'),
      'x64',
      2_445_406,
      'cpu MHz',
    ],
    ['unreadable /proc/cpuinfo', '', 'x64', DEFAULT_TSC_KHZ, 'default'],
    [
      'arm64 host: QEMU counts nanoseconds',
      hostFixture('cpuinfo-arm64-neoverse-n1.txt'),
      'arm64',
      1_000_000,
      'QEMU clock',
    ],
    ['another host architecture', '', 'riscv64', DEFAULT_TSC_KHZ, 'default'],
  ];
  test.each(cases)('%s', (_name, text, arch, khz, source) => {
    expect(guestTscKhz(parseCpuInfo(text), arch)).toEqual({ khz, source });
  });
});
