import { ownershipScript } from '../../../src/images/ownership.js';

test('a rootless build gets the recorded owners, root for unnamed paths, and its devices', () => {
  const owners = new Map([
    ['bin', { uid: 0, gid: 0 }],
    ['bin/busybox', { uid: 0, gid: 0 }],
    ['home/app', { uid: 1000, gid: 1000 }],
    ['home/app/notes', { uid: 1000, gid: 50 }],
  ]);
  const devices = [{ path: 'dev/null', node: 'c' as const, major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 }];
  const paths = ['bin', 'bin/busybox', 'home', 'home/app', 'home/app/notes'];
  const { script, unwritable } = ownershipScript(paths, { owners, devices }, { uid: 1000, gid: 1000 });
  expect(unwritable).toEqual([]);
  expect(script.split('\n')).toEqual([
    'sif "/bin" uid 0',
    'sif "/bin" gid 0',
    'sif "/bin/busybox" uid 0',
    'sif "/bin/busybox" gid 0',
    // "home" was only implied by its children: root, as Docker makes it.
    'sif "/home" uid 0',
    'sif "/home" gid 0',
    // Already the builder's ids: nothing to change.
    'sif "/home/app/notes" gid 50',
    'cd "/dev"',
    'mknod "null" c 1 3',
    'cd /',
    'sif "/dev/null" mode 020666',
    'sif "/dev/null" uid 0',
    'sif "/dev/null" gid 0',
    '',
  ]);
});

test('names debugfs cannot quote are reported, not mangled', () => {
  const { unwritable } = ownershipScript(
    ['ok', 'bad"name', 'new\nline'],
    { owners: new Map(), devices: [] },
    { uid: 1, gid: 1 },
  );
  expect(unwritable).toEqual(['bad"name', 'new\nline']);
});
