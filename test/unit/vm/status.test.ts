import { parseGuestStatus } from '../../../src/vm/status.js';

describe('parseGuestStatus', () => {
  test.each([
    ['', { booted: false, halted: false }],
    ['booted\n', { booted: true, halted: false }],
    ['booted\nstarted 136\n', { booted: true, servicePid: 136, halted: false }],
    [
      'booted\nstarted 136\nexited 143\nhalted\n',
      { booted: true, servicePid: 136, exitCode: 143, halted: true },
    ],
    [
      'booted\nfailed no disk with serial rootfs\n',
      { booted: true, failure: 'no disk with serial rootfs', halted: false },
    ],
  ])('%j', (text, expected) => expect(parseGuestStatus(text)).toEqual(expected));
});
