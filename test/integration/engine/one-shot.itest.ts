import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { busyboxLayout, variantLayout } from '../../support/fixtures.js';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';

// A container whose command runs to its end is a normal outcome, as under
// Docker: real QEMU, real guest, an image laid out like the official busybox
// (no entrypoint, Cmd ["sh"]), driven through the hyper CLI.
let stateDir: string;
let image: string;
let cleanup: () => Promise<void>;

const vmNames = (): Promise<string[]> => readdir(path.join(stateDir, 'vms')).catch(() => []);

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-oneshot-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  const variant = await variantLayout(await busyboxLayout(), (config) => {
    const inner = config.config as Record<string, unknown>;
    delete inner.Entrypoint;
    inner.Cmd = ['sh'];
    delete inner.ExposedPorts;
  });
  cleanup = variant.cleanup;
  image = `oci:${variant.dir}`;
});

afterEach(async () => {
  for (const name of await vmNames()) await hyper('rm', '-f', name);
});

afterAll(async () => {
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await cleanup();
  await rm(stateDir, { recursive: true, force: true });
  delete process.env.HYPER_STATE_DIR;
  delete process.env.HYPER_ACCEL;
});

test('hyper run --rm IMAGE sh -c "echo hi; exit 3" prints hi, exits 3 and leaves no VM', async () => {
  const result = await hyper('run', '--rm', image, 'sh', '-c', 'echo hi; exit 3');
  expect(result.stdout).toBe('hi\n');
  expect(result.code).toBe(3);
  expect(await vmNames()).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});

test('attached without --rm: stdout and stderr apart, the exit code, and the VM kept as exited', async () => {
  const result = await hyper(
    'run',
    '-a',
    '--name',
    'once',
    image,
    'sh',
    '-c',
    'echo one; echo two >&2; exit 0',
  );
  expect(result.stdout).toBe('one\n');
  // The service's stderr is the run's stderr, after the progress lines, as docker run does it.
  expect(result.stderr).toMatch(/\ntwo\n$|^two\n$/);
  expect(result.code).toBe(0);
  const rows = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
    name: string;
    state: string;
    exitCode: number;
  }[];
  expect(rows).toEqual([expect.objectContaining({ name: 'once', state: 'exited', exitCode: 0 })]);
  expect((await hyperOk('wait', 'once')).stdout).toBe('0\n');
  const logs = await hyperOk('logs', 'once');
  expect(logs.stdout).toBe('one\n');
  expect(logs.stderr).toBe('two\n');
});

test('hyper logs -f follows the log while the VM runs and returns when it stops', async () => {
  const script = 'for i in 1 2 3 4 5; do echo line $i; sleep 1; done; exit 7';
  await hyperOk('run', '-d', '--name', 'ticker', image, 'sh', '-c', script);
  const followed = await hyperOk('logs', '-f', 'ticker');
  // Every line, including those written after logs -f began, and nothing cut off.
  expect(followed.stdout).toBe('line 1\nline 2\nline 3\nline 4\nline 5\n');
  expect((await hyperOk('wait', 'ticker')).stdout).toBe('7\n');
});

test('hyper kill stops a running VM at once with 137; wait reports it', async () => {
  await hyperOk('run', '-d', '--name', 'sleeper', image, 'sh', '-c', 'echo up; exec sleep 600');
  expect((await hyperOk('kill', 'sleeper')).stderr).toBe('sleeper: exited with code 137\n');
  expect((await hyperOk('wait', 'sleeper')).stdout).toBe('137\n');
  await hyperOk('rm', 'sleeper');
  expect(await vmNames()).toEqual([]);
});

test('an interrupted attached run stops the command with its stop signal, exits with its code, and --rm still removes it', async () => {
  // The CLI bundle as a user runs it, so the signal reaches a real process.
  const script = 'trap "echo stopping; exit 5" TERM; echo ready; while :; do sleep 1; done';
  const child = execa(
    'node',
    ['dist/cli/index.js', 'run', '--rm', '--name', 'stopped', image, 'sh', '-c', script],
    {
      reject: false,
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (data: Buffer) => {
      if (String(data).includes('ready')) resolve();
    });
    void child.then(() => reject(new Error('hyper run ended before its command was ready')));
  });
  child.kill('SIGINT');
  const result = await child;
  expect(result.stdout).toBe('ready\nstopping'); // execa drops the final newline
  expect(result.exitCode).toBe(5);
  expect(await vmNames()).toEqual([]);
});

test('hyper exec streams: output comes while the command runs, and -i feeds it stdin as it comes', async () => {
  await hyperOk('run', '-d', '--name', 'shell', image, 'sh', '-c', 'exec sleep 600');
  // Causality, not timing: the command waits for a line that the test sends only once "first" has arrived.
  const script = 'echo first; read line; echo "second $line"; echo to-err >&2; exit 4';
  const child = execa('node', ['dist/cli/index.js', 'exec', '-i', 'shell', '--', 'sh', '-c', script], {
    reject: false,
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (data: Buffer) => {
      if (String(data).includes('first')) resolve();
    });
    void child.then(() => reject(new Error('hyper exec ended before its command printed "first"')));
  });
  // Stdin stays open: the line must reach the command on its own, not when stdin closes.
  child.stdin?.write('go\n');
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (data: Buffer) => {
      if (String(data).includes('second go')) resolve();
    });
    void child.then(() => reject(new Error('hyper exec ended before its command read the line')));
  });
  child.stdin?.end();
  const result = await child;
  expect(result.stdout).toBe('first\nsecond go'); // execa drops the final newline
  expect(result.stderr).toBe('to-err');
  expect(result.exitCode).toBe(4);
});

test('hyper exec -i ends when the command does, however much stdin is left', async () => {
  await hyperOk('run', '-d', '--name', 'reader', image, 'sh', '-c', 'exec sleep 600');
  // 4 MiB offered, 5 bytes read: the command's exit ends the exec, and nothing is read twice.
  const result = await execa('node', ['dist/cli/index.js', 'exec', '-i', 'reader', '--', 'head', '-c', '5'], {
    input: Buffer.alloc(4 * 1024 * 1024, 'abcdefgh'),
    reject: false,
  });
  expect(result.stdout).toBe('abcde');
  expect(result.exitCode).toBe(0);

  // Every byte arrives once and in order: 1 MiB of random bytes, checked by their digest in the guest.
  const input = randomBytes(1024 * 1024);
  const digest = await execa('node', ['dist/cli/index.js', 'exec', '-i', 'reader', '--', 'sha256sum'], {
    input,
  });
  expect(digest.stdout).toBe(`${createHash('sha256').update(input).digest('hex')}  -`);
});

test.each([
  [
    ['run', '-d', '--rm', 'x'],
    'hyper run: --detach runs the VM in the background; it cannot be combined with --rm or --attach\n',
    2,
  ],
  [['logs', '-f', 'nope'], 'hyper logs: no such VM: nope\n', 125],
  [['wait', 'nope'], 'hyper wait: no such VM: nope\n', 125],
  [['kill', 'nope'], 'hyper kill: no such VM: nope\n', 125],
])('hyper %j is refused with a clear message', async (argv, message, code) => {
  expect(await hyper(...argv)).toEqual({ code, stdout: '', stderr: message });
});

test('a VM is found by a unique prefix of its id, as Docker finds containers, and listed by label', async () => {
  await hyperOk(
    'run',
    '-d',
    '--name',
    'labelled',
    '-l',
    'team=db',
    '-l',
    'tier',
    image,
    'sh',
    '-c',
    'echo up; exec sleep 600',
  );
  await hyperOk('run', '-d', '--name', 'plain', image, 'sh', '-c', 'exec sleep 600');
  const rows = JSON.parse((await hyperOk('ps', '--json')).stdout) as { id: string; name: string }[];
  const labelled = rows.find((row) => row.name === 'labelled');
  expect(labelled?.id).toMatch(/^[0-9a-f]{64}$/);
  expect(new Set(rows.map((row) => row.id)).size).toBe(2);

  const prefix = labelled?.id.slice(0, 12) ?? '';
  expect((await hyperOk('logs', prefix)).stdout).toBe('up\n');
  const byLabel = async (...filters: string[]): Promise<string[]> =>
    (
      JSON.parse((await hyperOk('ps', '--json', ...filters.flatMap((f) => ['--filter', f]))).stdout) as {
        name: string;
      }[]
    ).map((row) => row.name);
  expect(await byLabel('label=team=db')).toEqual(['labelled']);
  expect(await byLabel('label=tier')).toEqual(['labelled']);
  expect(await byLabel('label=team=web')).toEqual([]);
  expect(await hyper('ps', '--filter', 'team=db')).toEqual({
    code: 2,
    stdout: '',
    stderr: 'hyper ps: --filter team=db: give label=KEY or label=KEY=VALUE\n',
  });
  await hyperOk('rm', '-f', prefix);
  expect(await vmNames()).toEqual(['plain']);
});
