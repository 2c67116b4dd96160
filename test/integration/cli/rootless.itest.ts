import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { addDirLayer, busyboxLayout } from '../../support/fixtures.js';
import { httpGet, hyperOk } from '../../support/cli.js';

// GitHub-hosted runners run the action as an ordinary user: a root filesystem
// built there must still carry the owners, modes and devices its layers give.
// This test builds one as uid 65534 with the real CLI bundle, then reads the
// ext4 with debugfs.
let work: string;
let base: string;
let layoutDir: string;

async function debugfsStat(file: string): Promise<string> {
  const { stdout } = await execa('debugfs', ['-R', `stat ${file}`, base]);
  return stdout.split('\n')[0] + ' ' + (stdout.split('\n').find((l) => l.includes('User:')) ?? '');
}

beforeAll(async () => {
  work = await mkdtemp('/tmp/hyper-rootless-');
  const layout = path.join(work, 'layout');
  await cp(await busyboxLayout(), layout, { recursive: true });
  // Layer 2, owned by 1000:1000: an application's home.
  const app = path.join(work, 'app');
  await mkdir(path.join(app, 'home', 'app'), { recursive: true });
  await writeFile(path.join(app, 'home', 'app', 'data'), 'private\n');
  await addDirLayer(layout, app, ['--owner=1000', '--group=1000']);
  // Layer 3, as root: a setuid binary and a character device (made here as root).
  const sys = path.join(work, 'sys');
  await mkdir(path.join(sys, 'usr', 'bin'), { recursive: true });
  await mkdir(path.join(sys, 'dev'));
  await writeFile(path.join(sys, 'usr', 'bin', 'suid'), '#!/bin/sh\n');
  await chmod(path.join(sys, 'usr', 'bin', 'suid'), 0o4755);
  await execa('mknod', ['-m', '620', path.join(sys, 'dev', 'console'), 'c', '5', '1']);
  await addDirLayer(layout, sys, ['--owner=0', '--group=0']);

  layoutDir = layout;
  const cache = path.join(work, 'cache');
  await mkdir(cache);
  await execa('chown', ['-R', '65534:65534', work]);
  await execa('chmod', ['-R', 'a+rX', work]);
  const pull = await asNobody({}, 'pull', `oci:${layout}`);
  expect(pull.stderr).toContain('Built root filesystem');
  expect(pull.exitCode).toBe(0);
  const { stdout } = await execa('sh', ['-c', `ls ${cache}/rootfs/v1/*.ext4`]);
  base = stdout.trim();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

test.each([
  ['/bin/busybox', 'regular', '0755', 0, 0],
  ['/tmp', 'directory', '01777', 0, 0],
  // GNU tar put ./home in layer 2 too, owned 1000:1000 like everything there.
  ['/home', 'directory', '0755', 1000, 1000],
  ['/usr', 'directory', '0755', 0, 0],
  ['/home/app/data', 'regular', '0644', 1000, 1000],
  ['/usr/bin/suid', 'regular', '04755', 0, 0],
  ['/dev/console', 'character special', '0620', 0, 0],
])('%s is a %s with mode %s owned by %d:%d', async (file, type, mode, uid, gid) => {
  const stat = await debugfsStat(file);
  expect(stat).toContain(`Type: ${type}`);
  expect(stat).toMatch(new RegExp(`Mode:\\s+${mode}\\s`));
  expect(stat).toMatch(new RegExp(`User:\\s+${uid}\\s+Group:\\s+${gid}\\s`));
});

/** Runs the real CLI bundle as uid 65534, with the work dir as its home, state and cache. */
function asNobody(env: Record<string, string>, ...args: string[]) {
  return execa(
    'setpriv',
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      path.resolve('dist/cli/index.js'),
      ...args,
    ],
    {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: work,
        HYPER_CACHE_DIR: path.join(work, 'cache'),
        HYPER_STATE_DIR: path.join(work, 'state'),
        HYPER_ACCEL: 'tcg',
        HYPER_NETWORK: 'user',
        ...env,
      },
      extendEnv: false,
      reject: false,
    },
  );
}

test("a plain user's VM: QEMU runs as that user, with no capability, under its filter; no cgroup, said once", async () => {
  // The guest bundle this host set up, copied where uid 65534 can read it.
  const kernel = /^kernel (.+)$/m.exec((await hyperOk('setup')).stdout)?.[1] ?? '';
  const bundle = path.join(work, 'bundle');
  await cp(path.dirname(kernel), bundle, { recursive: true });
  await execa('chown', ['-R', '65534:65534', bundle]);
  const env = { HYPER_GUEST_BUNDLE_DIR: bundle };
  try {
    const run = await asNobody(
      env,
      'run',
      '-d',
      '--name',
      'web',
      '-p',
      '80',
      '--entrypoint',
      '/bin/sh',
      `oci:${layoutDir}`,
      '-c',
      'httpd -f -p 80 -h /www',
    );
    expect(run.stderr.match(/are not bounded on this host: hyper is not running as root/g)).toHaveLength(1);
    expect(run.exitCode).toBe(0);
    const [web] = JSON.parse((await asNobody(env, 'ps', '--json')).stdout) as {
      pid: number;
      ports: { hostPort: number }[];
    }[];
    expect(await httpGet(`http://127.0.0.1:${web?.ports[0]?.hostPort}/`)).toContain('hello from');
    const status = await readFile(`/proc/${web?.pid}/status`, 'utf8');
    expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    // Not root: nothing to drop to, and no chroot.
    const cmdline = await readFile(`/proc/${web?.pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain('-runas');
    expect(cmdline).toContain('spawn=deny');
  } finally {
    const removed = await asNobody(env, 'rm', '-f', 'web');
    expect(removed.exitCode).toBe(0);
  }
});
