import { spawn } from 'node:child_process';
import { hasReleased, parseProcStat, waitForExit } from '../../../src/process/pids.js';

describe('waitForExit', () => {
  test('a process still running is not gone; once killed and reaped it is', async () => {
    const marker = `hyper-wait-${process.pid}`;
    const child = spawn('sh', ['-c', `exec sleep 30 # ${marker}`], { stdio: 'ignore' });
    const pid = child.pid as number;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await waitForExit(pid, marker, 200)).toBe(false);
    child.kill('SIGKILL');
    expect(await waitForExit(pid, marker, 5000)).toBe(true);
  });
});

describe('hasReleased', () => {
  // /proc/PID/stat of a QEMU: the name in parentheses, then state (field 3) ... start time (field 22).
  const stat = (state: string, start = '4242') =>
    parseProcStat(`7 (qemu-system-x86) ${state} 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 9 0 ${start} 1 2 3`);

  test('reads the state and start time after the command name', () => {
    expect(parseProcStat('9 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 x')).toEqual({
      state: 'S',
      startTime: '777',
    });
  });

  test('a running or exiting process holds its files; a zombie with threads left still may', () => {
    expect(hasReleased(stat('S'), 9, '4242')).toBe(false);
    expect(hasReleased(stat('D'), 1, '4242')).toBe(false);
    expect(hasReleased(stat('Z'), 3, '4242')).toBe(false);
  });

  test('gone, a zombie alone, or the pid now another process: released', () => {
    expect(hasReleased(undefined, 0, '4242')).toBe(true);
    expect(hasReleased(stat('Z'), 1, '4242')).toBe(true);
    expect(hasReleased(stat('S', '9999'), 1, '4242')).toBe(true);
  });
});
