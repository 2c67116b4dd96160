import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { busyboxLayout, variantLayout } from '../../support/fixtures.js';
import { httpGet, hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';

// Real QEMU, real guest kernel and init, real OCI layout built from Debian's busybox-static.
let stateDir: string;
let image: string;

interface PsRow {
  name: string;
  state: string;
  exitCode: number | null;
  ports: { hostPort: number; containerPort: number }[];
  pid: number | null;
  accel: string;
  bootMs: number | null;
}

async function ps(): Promise<PsRow[]> {
  const result = await hyper('ps', '--json');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as PsRow[];
}

async function hostPortOf(name: string): Promise<number> {
  const row = (await ps()).find((r) => r.name === name);
  const port = row?.ports[0]?.hostPort;
  if (!port) throw new Error(`${name} has no published port`);
  return port;
}

async function vmNames(): Promise<string[]> {
  return readdir(path.join(stateDir, 'vms')).catch(() => []);
}

beforeAll(async () => {
  // Short: QEMU's unix sockets live under it.
  stateDir = await mkdtemp('/tmp/hyper-it-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  image = `oci:${await busyboxLayout()}`;
});

// A failed test must not leave its VMs to the next one.
afterEach(async () => {
  for (const name of await vmNames()) await hyper('rm', '-f', name);
});

afterAll(async () => {
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  delete process.env.HYPER_STATE_DIR;
  delete process.env.HYPER_ACCEL;
});

test('a busybox httpd image from an OCI layout serves HTTP, runs exec, stops on SIGTERM and leaves nothing after rm', async () => {
  const script = 'trap "echo got TERM; exit 42" TERM; httpd -f -p 80 -h /www & wait';
  const run = await hyper('run', '--name', 'web', '-p', '80', '--entrypoint', '/bin/sh', image, '-c', script);
  expect(run.stderr).not.toContain('hyper run:');
  expect(run.code).toBe(0);
  expect(run.stdout).toBe('web\n');

  const [row] = await ps();
  expect(row).toMatchObject({ name: 'web', state: 'running', accel: 'tcg' });
  expect(row?.pid).toBeGreaterThan(0);
  expect(row?.bootMs).toBeGreaterThan(0);
  const port = await hostPortOf('web');
  expect(await httpGet(`http://127.0.0.1:${port}/`)).toContain('hello from a hyper-services microVM');

  const exec = await hyper('exec', 'web', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3');
  expect(exec).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
  const env = await hyper('exec', '-e', 'EXTRA=1', 'web', 'sh', '-c', 'echo $HOSTNAME $EXTRA $(pwd)');
  expect(env.stdout).toBe('web 1 /www\n');

  const stop = await hyper('stop', '--time', '20', 'web');
  expect(stop.code).toBe(0);
  expect(stop.stderr).toContain('web: exited with code 42');
  expect((await hyper('logs', 'web')).stdout).toContain('got TERM');
  expect(await ps()).toEqual([
    expect.objectContaining({ name: 'web', state: 'exited', exitCode: 42, pid: null }),
  ]);

  // The init unmounted the container root and powered off after reporting the code.
  expect(await readFile(path.join(stateDir, 'vms', 'web', 'status'), 'utf8')).toMatch(/exited 42\nhalted\n$/);

  const pid = row?.pid as number;
  await hyperOk('rm', 'web');
  expect(await stat(`/proc/${pid}`).catch(() => undefined)).toBeUndefined();
  expect(await vmNames()).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});

test('two VMs at once on different ports share one read-only base image', async () => {
  await hyperOk('run', '--name', 'one', '-p', '80', image);
  await hyperOk('run', '--name', 'two', '-p', '80', image);
  const [portOne, portTwo] = [await hostPortOf('one'), await hostPortOf('two')];
  expect(portOne).not.toBe(portTwo);
  expect(await httpGet(`http://127.0.0.1:${portOne}/`)).toContain('hello');
  expect(await httpGet(`http://127.0.0.1:${portTwo}/`)).toContain('hello');

  const backing = async (name: string): Promise<string> => {
    const { stdout } = await execa('qemu-img', [
      'info',
      '-U',
      '--output=json',
      path.join(stateDir, 'vms', name, 'rootfs.qcow2'),
    ]);
    return (JSON.parse(stdout) as { 'full-backing-filename': string })['full-backing-filename'];
  };
  const base = await backing('one');
  expect(await backing('two')).toBe(base);
  expect((await stat(base)).mode & 0o222).toBe(0);

  await hyperOk('rm', '-f', 'one', 'two');
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});

test("the user is resolved in the image's own passwd and group files; orphans are reaped by the init", async () => {
  // Orphans: the subshells exit at once, their sleeps are re-parented to PID 1 and must not stay zombies.
  const script = '(sleep 0.2 &); (sleep 0.2 &); (sleep 0.2 &); exec httpd -f -p 80 -h /www';
  await hyperOk(
    'run',
    '--name',
    'users',
    '--user',
    'www-data',
    '--entrypoint',
    '/bin/sh',
    image,
    '-c',
    script,
  );
  const id = await hyperOk('exec', 'users', '--', 'id');
  expect(id.stdout).toBe('uid=33(www-data) gid=33(www-data) groups=33(www-data)\n');
  const home = await hyperOk('exec', 'users', '--', 'sh', '-c', 'echo $HOME $(pwd)');
  expect(home.stdout).toBe('/www /www\n');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const zombies = await hyperOk('exec', 'users', '--', 'sh', '-c', "ps -o stat,pid,comm | awk '$1 ~ /^Z/'");
  expect(zombies.stdout).toBe('');
  await hyperOk('rm', '-f', 'users');

  await hyperOk('run', '--name', 'numeric', '--user', '1000:33', '--workdir', '/tmp', image);
  expect((await hyperOk('exec', 'numeric', '--', 'sh', '-c', 'id -u; id -g; pwd')).stdout).toBe(
    '1000\n33\n/tmp\n',
  );
  await hyperOk('rm', '-f', 'numeric');

  const unknown = await hyper('run', '--name', 'nouser', '--user', 'ghost', image);
  expect(unknown.code).toBe(125);
  expect(unknown.stderr).toContain(
    `unable to find user "ghost": no matching entry in /etc/passwd of image ${image}`,
  );
  const badGroup = await hyper('run', '--name', 'nogroup', '--user', 'www-data:ghosts', image);
  expect(badGroup.stderr).toContain(
    `unable to find group "ghosts": no matching entry in /etc/group of image ${image}`,
  );
  expect(await vmNames()).toEqual([]);
});

describe('bad input gets a clear message and leaves nothing behind', () => {
  test('an image with neither Entrypoint nor Cmd', async () => {
    const bare = await variantLayout(image.slice('oci:'.length), (config) => {
      const c = config.config as Record<string, unknown>;
      delete c.Entrypoint;
      delete c.Cmd;
    });
    try {
      const result = await hyper('run', '--name', 'bare', `oci:${bare.dir}`);
      expect(result.code).toBe(125);
      expect(result.stderr).toContain(
        `image oci:${bare.dir} has neither Entrypoint nor Cmd, and no command was given`,
      );
      expect(await vmNames()).toEqual([]);
    } finally {
      await bare.cleanup();
    }
  });

  test('a host port that is already in use is named', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const result = await hyper('run', '--name', 'clash', '-p', `${port}:80`, image);
      expect(result.code).toBe(125);
      expect(result.stderr).toContain(`host port ${port} is already in use (127.0.0.1:${port}/tcp)`);
      expect(await vmNames()).toEqual([]);
      expect(await qemuProcessesUnder(stateDir)).toEqual([]);
    } finally {
      server.close();
    }
  });

  test('a name that is already taken', async () => {
    await hyperOk('run', '--name', 'taken', image);
    const again = await hyper('run', '--name', 'taken', image);
    expect(again.code).toBe(125);
    expect(again.stderr).toContain('the name "taken" is already in use by a VM');
    expect(await vmNames()).toEqual(['taken']);
    expect((await ps())[0]?.state).toBe('running');
    expect((await hyper('rm', 'taken')).stderr).toContain(
      'the VM is running; stop it first or use "hyper rm -f taken"',
    );
    await hyperOk('rm', '-f', 'taken');
  });

  test('hyper exec on a stopped VM', async () => {
    await hyperOk('run', '--name', 'stopped', image);
    await hyperOk('stop', 'stopped');
    const exec = await hyper('exec', 'stopped', '--', 'true');
    expect(exec.code).toBe(125);
    expect(exec.stderr).toContain('cannot exec in "stopped": the VM is not running (exited with code 143)');
    await hyperOk('rm', 'stopped');
    expect(await vmNames()).toEqual([]);
  });

  test('unknown VM names', async () => {
    expect((await hyper('logs', 'ghost')).stderr).toContain('no such VM: ghost');
    expect((await hyper('stop', 'ghost')).stderr).toContain('no such VM: ghost');
  });
});
