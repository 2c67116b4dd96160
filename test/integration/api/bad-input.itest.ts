import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { qemuProcessesUnder } from '../../support/cli.js';
import { type TestRegistry } from '../../support/registry/registry.js';
import {
  DOCKER,
  docker,
  dockerOk,
  socketRequest,
  startDaemon,
  type RunningDaemon,
  startApiFixture,
  stopApiFixture,
} from '../../support/serve.js';

// What `hyper serve` does with clients that misbehave or ask for what cannot
// be: the answer they see, and that nothing is left behind (no command in the
// guest, no file of an exec, no descriptor in the daemon, no QEMU).
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let image: string;

beforeAll(async () => {
  ({ registry, image, stateDir, daemon } = await startApiFixture('/tmp/hyper-api-bad-'));
  await dockerOk(daemon, 'pull', image);
});

afterAll(async () => {
  await stopApiFixture({ registry, daemon, stateDir });
});

/** Polls `probe` until it gives a value; the timeout says what was awaited and what was last seen. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = 'not yet';
    } catch (error: unknown) {
      last = error instanceof Error ? error.message : error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms (last seen: ${JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A docker CLI process of this test's own, with its output so far. */
function spawnDocker(args: string[]): { output(): string; hangUp(): Promise<void> } {
  const child = spawn(DOCKER, args, {
    env: { ...process.env, ...daemon.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    output: () => output,
    // SIGKILL: the client just goes, as a crashed one does (SIGTERM would make attach forward it).
    async hangUp() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** The command lines of the processes in the guest (a container is its VM: ps sees all of it). */
async function guestCommands(container: string): Promise<string[]> {
  const ps = await dockerOk(daemon, 'exec', container, 'ps', '-o', 'args');
  return ps
    .split('\n')
    .slice(1)
    .map((line) => line.trim());
}

/** A probe for waitFor: true once no process in the guest matches; else it fails naming those that do. */
function noneRunning(container: string, matches: (line: string) => boolean): () => Promise<true> {
  return async () => {
    const left = (await guestCommands(container)).filter(matches);
    if (left.length > 0) throw new Error(`still running: ${left.join(' | ')}`);
    return true;
  };
}

/**
 * The exec directories in the guest's /run (outside the container root, seen
 * through init's root), leaving out the one of the exec that lists them.
 */
async function execDirs(container: string): Promise<string[]> {
  const listing = await dockerOk(
    daemon,
    'exec',
    container,
    'sh',
    '-c',
    'readlink /proc/$$/fd/1; ls /proc/1/root/run',
  );
  const [own = '', ...names] = listing.split('\n');
  const ownDir = path.basename(path.dirname(own));
  expect(ownDir).toMatch(/^hyper-exec-[0-9a-f]+$/);
  return names.filter((name) => name.startsWith('hyper-exec-') && name !== ownDir);
}

async function daemonDescriptors(): Promise<number> {
  return (await readdir(`/proc/${daemon.pid}/fd`)).length;
}

/** The daemon's descriptors at rest: the fewest seen over a second (a closed connection may linger a moment). */
async function restingDescriptors(): Promise<number> {
  let fewest = Infinity;
  for (let sample = 0; sample < 5; sample++) {
    fewest = Math.min(fewest, await daemonDescriptors());
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return fewest;
}

/** Nothing of the daemon's left: no container, no QEMU under its state dir. */
async function expectNothingLeft(): Promise<void> {
  expect((await dockerOk(daemon, 'ps', '-a', '-q')).trim()).toBe('');
  await waitFor('no QEMU left under the state dir', async () =>
    (await qemuProcessesUnder(stateDir)).length === 0 ? true : undefined,
  );
}

async function expectPing(): Promise<void> {
  const ping = await socketRequest(daemon.socket, 'GET', '/_ping');
  expect({ status: ping.status, body: ping.body }).toEqual({ status: 200, body: 'OK' });
}

/**
 * Starts an exec over a raw upgraded connection, as the docker CLI does, and
 * resolves with that connection once `text` has come out of it.
 */
function startExecRaw(execId: string, text: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const request = http.request({
      socketPath: daemon.socket,
      method: 'POST',
      path: `/v1.41/exec/${execId}/start`,
      headers: { 'Content-Type': 'application/json', Connection: 'Upgrade', Upgrade: 'tcp' },
    });
    request.on('upgrade', (_response, socket: Socket, head: Buffer) => {
      let seen = head.toString('latin1');
      const check = (): void => {
        if (seen.includes(text)) resolve(socket);
      };
      socket.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        check();
      });
      socket.on('close', () => reject(new Error(`the exec ended before "${text}": ${JSON.stringify(seen)}`)));
      check();
    });
    request.on('response', (response) => reject(new Error(`exec start answered ${response.statusCode}`)));
    request.on('error', reject);
    request.end('{"Detach":false,"Tty":false}');
  });
}

describe('a client that hangs up', () => {
  const ticker = 'while :; do echo tick; sleep 1; done';
  /** Prints "started", then a line a second: the first write after a hang-up fails. */
  const talker = 'echo started; while :; do sleep 1; echo tock; done';
  let baseline = 0;

  beforeAll(async () => {
    // SYS_PTRACE: an exec reads the guest's /run through init's root (/proc/1/root), outside Docker's default set.
    await dockerOk(
      daemon,
      'run',
      '-d',
      '--name',
      'chatty',
      '--cap-add',
      'SYS_PTRACE',
      '--entrypoint',
      'sh',
      image,
      '-c',
      ticker,
    );
    // A first exec sets up what every exec shares; the daemon's descriptors after it are the baseline.
    expect(await execDirs('chatty')).toEqual([]);
    baseline = await restingDescriptors();
  });

  afterAll(async () => {
    // The container itself is untouched by all of it.
    expect((await dockerOk(daemon, 'inspect', '--format', '{{.State.Status}}', 'chatty')).trim()).toBe(
      'running',
    );
    await dockerOk(daemon, 'rm', '-f', 'chatty');
    await expectNothingLeft();
  });

  async function settled(what: string): Promise<void> {
    await expectPing();
    await waitFor(`the daemon's descriptors back to ${baseline} after ${what}`, async () =>
      (await daemonDescriptors()) <= baseline ? true : undefined,
    );
  }

  /** Creates an exec of `script` and starts it over a raw connection; resolves once it printed "started". */
  async function rawExec(script: string): Promise<{ id: string; connection: Socket }> {
    const created = await socketRequest(
      daemon.socket,
      'POST',
      '/v1.41/containers/chatty/exec',
      JSON.stringify({ Cmd: ['sh', '-c', script], AttachStdout: true }),
    );
    expect(created.status).toBe(201);
    const id = (JSON.parse(created.body) as { Id: string }).Id;
    return { id, connection: await startExecRaw(id, 'started') };
  }

  async function execOver(id: string): Promise<void> {
    await waitFor('the exec to be over', async () => {
      const inspect = await socketRequest(daemon.socket, 'GET', `/v1.41/exec/${id}/json`);
      return (JSON.parse(inspect.body) as { Running: boolean }).Running ? undefined : true;
    });
  }

  test('in logs -f or attach: the daemon lets the stream go', async () => {
    const logs = spawnDocker(['logs', '-f', 'chatty']);
    await waitFor('logs -f to show output', async () => (logs.output().includes('tick') ? true : undefined));
    await logs.hangUp();
    await settled('logs -f');

    const attach = spawnDocker(['attach', '--no-stdin', 'chatty']);
    await waitFor('attach to show output', async () => (attach.output().includes('tick') ? true : undefined));
    await attach.hangUp();
    await settled('attach');
  });

  test('in an exec that goes on writing: the command ends and its files go', async () => {
    const exec = spawnDocker(['exec', 'chatty', 'sh', '-c', talker]);
    await waitFor('the exec to start', async () => (exec.output().includes('started') ? true : undefined));
    await exec.hangUp();
    await waitFor(
      'the exec to be gone from the guest',
      noneRunning('chatty', (line) => line.includes('tock')),
    );
    expect(await execDirs('chatty')).toEqual([]);
    await settled('docker exec');

    // The same over a raw connection, whose exec can be inspected afterwards.
    const raw = await rawExec(talker);
    raw.connection.destroy();
    await execOver(raw.id);
    await waitFor(
      'the raw exec to be gone',
      noneRunning('chatty', (line) => line.includes('tock')),
    );
    expect(await execDirs('chatty')).toEqual([]);
    await settled('a raw exec');
  });

  test('in an exec with a child in the background: the child ends too', async () => {
    const raw = await rawExec(`sleep 301 & ${talker}`);
    raw.connection.destroy();
    await execOver(raw.id);
    await waitFor(
      'the shell and its child to be gone from the guest',
      noneRunning('chatty', (line) => line.includes('tock') || line === 'sleep 301'),
    );
    expect(await execDirs('chatty')).toEqual([]);
    await settled('an exec with a child');
  });
});

// A container of its own: while the exec runs, it holds the VM's guest agent.
test('a docker CLI that dies during a silent exec takes the command with it', async () => {
  // SYS_PTRACE: execDirs reads the guest's /run through init's root (/proc/1/root).
  await dockerOk(
    daemon,
    'run',
    '-d',
    '--name',
    'silent',
    '--cap-add',
    'SYS_PTRACE',
    '--entrypoint',
    'sleep',
    image,
    '600',
  );
  try {
    // No output for the daemon to fail to write: only its probe of the half-closed connection notices.
    const exec = spawnDocker(['exec', 'silent', 'sh', '-c', 'echo started; exec sleep 300']);
    await waitFor('the exec to start', async () => (exec.output().includes('started') ? true : undefined));
    await exec.hangUp();
    await waitFor(
      'the silent command to be gone from the guest',
      noneRunning('silent', (line) => line === 'sleep 300'),
    );
    expect(await execDirs('silent')).toEqual([]);
    await expectPing();
  } finally {
    await docker(daemon, ['rm', '-f', 'silent']);
  }
});

test('two clients creating the same name at once: one 201, one 409, one container', async () => {
  const body = JSON.stringify({ Image: image, Entrypoint: ['sleep'], Cmd: ['600'] });
  const answers = await Promise.all(
    [1, 2].map(() => socketRequest(daemon.socket, 'POST', '/v1.41/containers/create?name=same', body)),
  );
  expect(answers.map((answer) => answer.status).sort()).toEqual([201, 409]);
  const conflict = answers.find((answer) => answer.status === 409);
  expect((JSON.parse(conflict?.body ?? '{}') as { message: string }).message).toContain(
    'The container name "/same" is already in use',
  );
  const winner = JSON.parse(answers.find((answer) => answer.status === 201)?.body ?? '{}') as { Id: string };

  const list = await socketRequest(daemon.socket, 'GET', '/v1.41/containers/json?all=1');
  const rows = JSON.parse(list.body) as { Id: string; Names: string[] }[];
  expect(rows.map((row) => ({ Id: row.Id, Names: row.Names }))).toEqual([
    { Id: winner.Id, Names: ['/same'] },
  ]);

  expect(await dockerOk(daemon, 'rm', 'same')).toBe('same');
  await expectNothingLeft();
});

test('the socket is 0660: a user outside its group is refused by the mode', async () => {
  // A directory anyone may enter, so that only the socket's own mode stands in the way.
  const parent = await mkdtemp('/tmp/hyper-api-sock-');
  await chmod(parent, 0o755);
  const socket = path.join(parent, 'api', 'docker.sock');
  const otherState = await mkdtemp('/tmp/hyper-api-bad-other-');
  const other = await startDaemon(otherState, { HYPER_ACCEL: 'tcg' }, { socket });
  try {
    const info = await stat(socket);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o660);
    expect((await stat(path.dirname(socket))).mode & 0o777).toBe(0o755);
    expect((await socketRequest(socket, 'GET', '/_ping')).status).toBe(200);

    // As nobody: it can see the socket (the path is open to it), and connecting fails.
    const client = [
      "const fs = require('node:fs');",
      "const net = require('node:net');",
      'const socket = process.argv[1];',
      "try { fs.statSync(socket); } catch (error) { console.log('stat ' + error.code); process.exit(0); }",
      'const connection = net.connect(socket);',
      "connection.on('connect', () => { console.log('connected'); connection.destroy(); });",
      "connection.on('error', (error) => console.log(error.code));",
    ].join('\n');
    const nobody = await execa(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', client, socket],
      { reject: false, cwd: '/' },
    );
    expect({ code: nobody.exitCode, stdout: nobody.stdout, stderr: nobody.stderr }).toEqual({
      code: 0,
      stdout: 'EACCES',
      stderr: '',
    });
    expect((await socketRequest(socket, 'GET', '/_ping')).status).toBe(200);
  } finally {
    expect(await other.stop()).toBe(0);
    await rm(otherState, { recursive: true, force: true });
  }
  // The daemon takes its socket with it.
  await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
  await rm(parent, { recursive: true, force: true });
});

test('pulling an image the registry does not have fails with the registry’s answer', async () => {
  const missing = `${registry.host}/demo/nope:1`;
  const pull = await docker(daemon, ['pull', missing]);
  expect(pull.code).not.toBe(0);
  expect(pull.stderr).toContain(`manifest for ${missing} not found on registry ${registry.host}`);
  expect(pull.stderr).toContain('(MANIFEST_UNKNOWN)');
  const images = JSON.parse((await socketRequest(daemon.socket, 'GET', '/v1.41/images/json')).body) as {
    RepoTags: string[];
  }[];
  expect(images.flatMap((entry) => entry.RepoTags).filter((tag) => tag.includes('/demo/nope'))).toEqual([]);
  await expectPing();
});

test('a bind mount outside the allowed directories is 403, names the path and the flag, and makes nothing', async () => {
  const before = await readdir(path.join(stateDir, 'vms')).catch(() => []);
  const refused = await docker(daemon, [
    'run',
    '--rm',
    '--entrypoint',
    'cat',
    '-v',
    '/etc:/host-etc:ro',
    image,
    '/host-etc/shadow',
  ]);
  expect(refused.code).toBe(125);
  expect(refused.stderr).toContain(
    'Error response from daemon: bind mount of /etc refused: it is outside the directories this daemon shares; bind mounts are allowed under /tmp (--allow-bind), ',
  );
  expect(refused.stderr).toContain(
    '; start hyper serve with --allow-bind /etc (or a directory above it) to allow it',
  );
  // --mount takes the same path, and a link under an allowed root is judged by where it leads.
  const link = await mkdtemp('/tmp/hyper-bind-link-');
  try {
    await symlink('/etc', path.join(link, 'etc'));
    const mounted = await docker(daemon, [
      'create',
      '--mount',
      `type=bind,source=${link}/etc,target=/x`,
      image,
    ]);
    expect(mounted.code).toBe(1);
    expect(mounted.stderr).toContain(`bind mount of /etc (${link}/etc leads there) refused`);
    // Under an allowed root: the container runs and sees the directory.
    await writeFile(path.join(link, 'note'), 'shared\n');
    expect(
      await dockerOk(
        daemon,
        'run',
        '--rm',
        '--entrypoint',
        'cat',
        '-v',
        `${link}:/data:ro`,
        image,
        '/data/note',
      ),
    ).toBe('shared');
  } finally {
    await rm(link, { recursive: true, force: true });
  }
  expect(await readdir(path.join(stateDir, 'vms')).catch(() => [])).toEqual(before);
});

test('unknown containers are 404 by id and name; exec in a stopped one is 409', async () => {
  const byName = await socketRequest(daemon.socket, 'GET', '/v1.41/containers/x/json');
  expect({ status: byName.status, body: JSON.parse(byName.body) }).toEqual({
    status: 404,
    body: { message: 'No such container: x' },
  });
  const byId = await socketRequest(daemon.socket, 'GET', `/v1.41/containers/${'0'.repeat(64)}/json`);
  expect(byId.status).toBe(404);
  expect(JSON.parse(byId.body)).toEqual({ message: `No such container: ${'0'.repeat(64)}` });

  const removal = await docker(daemon, ['rm', 'nope']);
  expect(removal.code).toBe(1);
  expect(removal.stderr).toBe('Error: No such container: nope');

  const run = await docker(daemon, ['run', '--name', 'finished', '--entrypoint', 'true', image]);
  expect(run.code).toBe(0);
  const id = (await dockerOk(daemon, 'inspect', '--format', '{{.Id}}', 'finished')).trim();
  const exec = await socketRequest(
    daemon.socket,
    'POST',
    '/v1.41/containers/finished/exec',
    JSON.stringify({ Cmd: ['true'] }),
  );
  expect({ status: exec.status, body: JSON.parse(exec.body) }).toEqual({
    status: 409,
    body: { message: `Container ${id} is not running` },
  });
  const cli = await docker(daemon, ['exec', 'finished', 'true']);
  expect(cli.code).not.toBe(0);
  expect(cli.stderr).toContain(`Container ${id} is not running`);

  expect(await dockerOk(daemon, 'rm', 'finished')).toBe('finished');
  await expectNothingLeft();
});
