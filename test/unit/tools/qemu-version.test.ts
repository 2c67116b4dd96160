import { readFileSync } from 'node:fs';
import {
  parseQemuVersion,
  qemuAtLeast,
  qemuVersionCommand,
  rememberedAnswer,
} from '../../../src/tools/qemu/version.js';

function qemuFixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/qemu/${name}`, import.meta.url), 'utf8');
}

test.each([
  [
    qemuFixture('qemu-system-x86_64-version.txt'),
    { text: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', version: '7.2.22' },
  ],
  [
    qemuFixture('qemu-img-version.txt'),
    { text: 'qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', version: '7.2.22' },
  ],
  [
    'QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\n',
    { text: 'QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)', version: '7.2.19' },
  ],
  // A stand-in program in QEMU's place still gives a first line; it names no version.
  ['fake qemu\n', { text: 'fake qemu', version: undefined }],
  ['', { text: '', version: undefined }],
])('parseQemuVersion(%j)', (stdout, expected) => {
  expect(parseQemuVersion(stdout)).toStrictEqual(expected);
});

test('the version command', () => {
  expect(qemuVersionCommand('/usr/bin/qemu-system-x86_64')).toStrictEqual({
    program: '/usr/bin/qemu-system-x86_64',
    args: ['--version'],
  });
});

test.each([
  ['7.2.22', 8, 2, false],
  ['8.1.5', 8, 2, false],
  ['8.2.2', 8, 2, true],
  ['8.10.0', 8, 2, true],
  ['9.0.0', 8, 2, true],
  ['10.0.2', 9, 1, true],
  ['9.0.4', 9, 1, false],
  // An unknown version is the oldest: the forms every QEMU takes.
  [undefined, 7, 2, false],
  ['', 0, 1, false],
] as const)('qemuAtLeast(%j, %d, %d) is %j', (version, major, minor, expected) => {
  expect(qemuAtLeast(version, major, minor)).toBe(expected);
});

test('a kept version is used only for the binary it was asked of', () => {
  const kept = JSON.stringify({
    identity: '/usr/bin/qemu|1|2|3|4|5',
    text: 'QEMU emulator version 7.2.22 (Debian)',
  });
  expect(rememberedAnswer(kept, '/usr/bin/qemu|1|2|3|4|5')).toEqual({
    text: 'QEMU emulator version 7.2.22 (Debian)',
    version: '7.2.22',
  });
  // An upgrade (another size, mtime or inode) asks QEMU again.
  expect(rememberedAnswer(kept, '/usr/bin/qemu|1|9|3|4|5')).toBeUndefined();
  // A damaged or foreign file is only a miss.
  for (const text of [
    '',
    '{',
    'null',
    '[]',
    JSON.stringify({ identity: '/usr/bin/qemu|1|2|3|4|5', text: 7 }),
  ])
    expect(rememberedAnswer(text, '/usr/bin/qemu|1|2|3|4|5')).toBeUndefined();
});
