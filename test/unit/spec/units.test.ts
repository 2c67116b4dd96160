import {
  parseCount,
  parseCpus,
  parseDurationMs,
  parseMemoryMiB,
  parseVolumeSize,
} from '../../../src/spec/units.js';
import { specError } from './spec-error.js';

describe('parseMemoryMiB', () => {
  test.each([
    ['512m', 512],
    ['512M', 512],
    ['512MB', 512],
    ['512Mi', 512],
    ['1g', 1024],
    ['1.5g', 1536],
    ['65536k', 64],
    ['268435456', 256],
    [268435456, 256],
    ['100000001', 96],
    ['64 m', 64],
  ])('%s -> %d MiB', (text, mib) => expect(parseMemoryMiB(text)).toBe(mib));

  test.each([
    ['32m', '"32m" is less than 64 MiB; give at least 64m'],
    ['512', '"512" is less than 64 MiB (a bare number is bytes; write 512m for MiB); give at least 64m'],
    ['lots', '"lots" is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g'],
    ['-1g', '"-1g" is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g'],
    ['1x', '"1x" is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g'],
  ])('%s is refused', (text, message) => expect(specError(() => parseMemoryMiB(text))).toBe(message));
});

describe('parseDurationMs', () => {
  test.each([
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['2.5s', 2_500],
    ['1500us', 2],
    ['0', 0],
    ['0s', 0],
  ])('%s -> %d ms', (text, ms) => expect(parseDurationMs(text)).toBe(ms));

  test.each(['10', '', 's', '10 s', '-1s', '1d', '1s2'])('%j is refused', (text) =>
    expect(specError(() => parseDurationMs(text))).toBe(
      `"${text}" is not a duration; use a number with a unit: 500ms, 10s, 1m30s, 1h`,
    ),
  );
});

describe('parseCpus rounds a fraction up to whole vCPUs', () => {
  test.each([
    ['1.5', 2],
    ['1', 1],
    ['0.25', 1],
    [4, 4],
  ])('%s -> %d', (text, cpus) => expect(parseCpus(text)).toBe(cpus));

  test.each(['0', '-1', 'two', ''])('%j is refused', (text) =>
    expect(specError(() => parseCpus(text))).toBe(
      `"${text}" is not a number of CPUs; use a number above 0, such as 1, 2 or 1.5`,
    ),
  );
});

describe('parseCount', () => {
  test('a whole number of at least the minimum', () => {
    expect(parseCount('3', 0)).toBe(3);
    expect(specError(() => parseCount('1.5', 0))).toBe('"1.5" is not a whole number of at least 0');
  });
});

describe('parseVolumeSize: bytes, rounded up to whole MiB', () => {
  const MiB = 1024 * 1024;
  test.each([
    ['512M', 512 * MiB],
    ['512m', 512 * MiB],
    ['2G', 2048 * MiB],
    ['2GiB', 2048 * MiB],
    ['2gb', 2048 * MiB],
    ['1.5g', 1536 * MiB],
    ['1T', 1024 * 1024 * MiB],
    ['16m', 16 * MiB],
    ['16777216', 16 * MiB],
    [16777216, 16 * MiB],
    ['100000001', 96 * MiB],
    [' 2 G ', 2048 * MiB],
  ])('%j -> %d', (text, bytes) => expect(parseVolumeSize(text)).toBe(bytes));

  test.each([
    ['abc', '"abc" is not a size; use a number with a unit, such as 512M or 2G'],
    ['-1G', '"-1G" is not a size; use a number with a unit, such as 512M or 2G'],
    ['2X', '"2X" is not a size; use a number with a unit, such as 512M or 2G'],
    ['', '"" is not a size; use a number with a unit, such as 512M or 2G'],
    ['15M', '"15M" is less than 16 MiB, too small for an ext4 volume and its journal; give at least 16M'],
    [
      '1000',
      '"1000" is less than 16 MiB (a bare number is bytes; write 512M for MiB), too small for an ext4 volume and its journal; give at least 16M',
    ],
  ])('%j is refused', (text, message) => expect(specError(() => parseVolumeSize(text))).toBe(message));
});
