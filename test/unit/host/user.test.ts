import { mapsAllIds, readSudoProbe, type SudoAnswer, type SudoProbe } from '../../../src/host/user.js';
import { hostFixture } from './fixture.js';

describe('mapsAllIds (/proc/self/uid_map)', () => {
  test.each([
    ['the host user namespace', hostFixture('uid_map-host.txt'), true],
    ['rootless Podman: root is one uid of the host', hostFixture('uid_map-rootless-podman.txt'), false],
    ['Docker userns-remap: 65536 ids', hostFixture('uid_map-userns-remap.txt'), false],
    ['no uid_map (a kernel without user namespaces)', undefined, true],
    ['empty text', '', false],
  ])('%s', (_name, text, expected) => {
    expect(mapsAllIds(text)).toBe(expected);
  });
});

describe('readSudoProbe (sudo -n true)', () => {
  const cases: [string, SudoProbe, SudoAnswer][] = [
    ['passwordless', { exitCode: 0, stderr: '' }, { usable: true }],
    ['not installed', { startError: 'ENOENT' }, { usable: false, reason: 'sudo is not installed' }],
    [
      'cannot be executed',
      { startError: 'EACCES' },
      { usable: false, reason: 'sudo cannot be run (EACCES)' },
    ],
    [
      'asks for a password',
      { exitCode: 1, stderr: hostFixture('sudo-password.txt') },
      { usable: false, reason: 'sudo asks for a password' },
    ],
    [
      'not in sudoers',
      { exitCode: 1, stderr: 'runner is not in the sudoers file.  This incident will be reported.\n' },
      { usable: false, reason: 'sudo does not allow this user' },
    ],
    [
      'a container with no-new-privileges',
      { exitCode: 1, stderr: hostFixture('sudo-no-new-privileges.txt') },
      {
        usable: false,
        reason:
          'sudo cannot raise privileges here: the "no new privileges" flag is set (a container setting)',
      },
    ],
    [
      'a nosuid mount',
      { exitCode: 1, stderr: hostFixture('sudo-nosuid.txt') },
      {
        usable: false,
        reason: 'sudo cannot raise privileges here: it is not setuid root (a nosuid mount or a container)',
      },
    ],
    [
      'anything else: its first line',
      { exitCode: 1, stderr: '\nsudo: unable to resolve host x\n' },
      { usable: false, reason: 'sudo -n true failed (sudo: unable to resolve host x)' },
    ],
    [
      'silent failure: the exit code',
      { exitCode: 3, stderr: '' },
      { usable: false, reason: 'sudo -n true failed (exit code 3)' },
    ],
  ];
  test.each(cases)('%s', (_name, probe, answer) => {
    expect(readSudoProbe(probe)).toEqual(answer);
  });
});
