import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { isAlive, isOurProcess, terminate } from '../../../src/process/pids.js';

/** A real node process whose command line carries `marker`; `ignoreTerm` makes it outlive SIGTERM. */
async function child(marker: string, ignoreTerm: boolean): Promise<number> {
  const script = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); console.log('up');`;
  const proc = spawn(process.execPath, ['-e', script, marker], { stdio: ['ignore', 'pipe', 'ignore'] });
  await once(proc.stdout, 'data');
  return proc.pid as number;
}

describe('terminate', () => {
  test('SIGTERM stops a process that heeds it', async () => {
    const pid = await child('hyper-terminate-test-heeds', false);
    expect(await terminate(pid, 'hyper-terminate-test-heeds', 10_000)).toBe('stopped');
    // Gone, or a zombie node has not reaped yet: either way it runs no more.
    expect(await isOurProcess(pid, 'hyper-terminate-test-heeds')).toBe(false);
  });

  test('SIGKILL follows the grace period for one that ignores SIGTERM', async () => {
    const pid = await child('hyper-terminate-test-ignores', true);
    expect(await terminate(pid, 'hyper-terminate-test-ignores', 300, 10_000)).toBe('killed');
    expect(await isOurProcess(pid, 'hyper-terminate-test-ignores')).toBe(false);
  });

  test('a pid whose command line does not carry the marker is left alone', async () => {
    const pid = await child('hyper-terminate-test-other', false);
    try {
      expect(await terminate(pid, 'hyper-terminate-test-someone-else', 10_000)).toBe('already gone');
      expect(isAlive(pid)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});
