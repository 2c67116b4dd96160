import { checkpointSpaceHint } from '../../../src/engine/snapshots.js';

const MiB = 1024 * 1024;

describe('checkpointSpaceHint (free space behind a failed checkpoint)', () => {
  test.each([
    ['statfs failed: nothing to add', undefined, ''],
    ['room for the RAM: nothing to add', 512 * MiB, ''],
    [
      'less free than the RAM: named',
      100 * MiB + 5,
      " (the disk holding /s/vms/db has 100 MiB free; a checkpoint writes up to the VM's 512 MiB of RAM)",
    ],
  ])('%s', (_name, free, hint) => {
    expect(checkpointSpaceHint(free, '/s/vms/db', 512)).toBe(hint);
  });
});
