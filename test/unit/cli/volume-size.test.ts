import { hyper } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';

// A bad size is refused before anything starts: no host tools, no state dir, no VM.
// The --accel given is bad too, and checked later: a size let through fails there, not in prepareHost.
const restoreEnv = snapshotEnv();
beforeEach(() => {
  delete process.env.HYPER_VOLUME_SIZE;
  process.env.HYPER_STATE_DIR = '/nonexistent/hyper-state';
});
afterEach(restoreEnv);

const commands = [
  ['run', ['--accel', 'none', 'busybox']],
  ['up', ['--accel', 'none', '-f', 'examples/services.yml']],
] as const;

describe.each(commands)('hyper %s', (command, rest) => {
  test('a --volume-size that is not a size is a usage error', async () => {
    expect(await hyper(command, '--volume-size', 'abc', ...rest)).toEqual({
      code: 2,
      stdout: '',
      stderr: `hyper ${command}: --volume-size: "abc" is not a size; use a number with a unit, such as 512M or 2G\n`,
    });
  });

  test('a --volume-size below 16 MiB is a usage error', async () => {
    expect(await hyper(command, '--volume-size=1M', ...rest)).toEqual({
      code: 2,
      stdout: '',
      stderr: `hyper ${command}: --volume-size: "1M" is less than 16 MiB, too small for an ext4 volume and its journal; give at least 16M\n`,
    });
  });

  test('a bad HYPER_VOLUME_SIZE is refused', async () => {
    process.env.HYPER_VOLUME_SIZE = '10 gigs';
    expect(await hyper(command, ...rest)).toEqual({
      code: 125,
      stdout: '',
      stderr: `hyper ${command}: HYPER_VOLUME_SIZE: "10 gigs" is not a size; use a number with a unit, such as 512M or 2G\n`,
    });
  });
});
