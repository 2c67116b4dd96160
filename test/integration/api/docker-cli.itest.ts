import { chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { httpGet, qemuProcessesUnder } from '../../support/cli.js';
import { type TestRegistry } from '../../support/registry/registry.js';
import {
  docker,
  dockerOk,
  socketRequest,
  startDaemon,
  type RunningDaemon,
  startApiFixture,
  stopApiFixture,
} from '../../support/serve.js';

// The docker CLI (Debian's docker.io, client only) against `hyper serve`:
// real daemon from dist/, real VMs under TCG, images from a real registry.
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let image: string;

beforeAll(async () => {
  ({ registry, image, stateDir, daemon } = await startApiFixture('/tmp/hyper-api-it-'));
});

afterAll(async () => {
  await stopApiFixture({ registry, daemon, stateDir });
});

test('docker version negotiates the API and names the server', async () => {
  const server = await dockerOk(daemon, 'version', '--format', '{{.Server.APIVersion}}');
  expect(server.trim()).toBe('1.47');
  // The client (API 1.41) stays at its own version, as it does with a newer Docker.
  expect((await dockerOk(daemon, 'version', '--format', '{{.Client.APIVersion}}')).trim()).toBe('1.41');
  const ping = await socketRequest(daemon.socket, 'HEAD', '/_ping');
  expect(ping.headers['api-version']).toBe('1.47');
});

test('pull, run -d -p, ps, port, logs, exec, stop and rm', async () => {
  const pull = await docker(daemon, ['pull', image]);
  expect(pull.code).toBe(0);
  const id = (await dockerOk(daemon, 'run', '-d', '--name', 'web', '-p', '127.0.0.1::80', image)).trim();
  expect(id).toMatch(/^[0-9a-f]{64}$/);
  const port = (await dockerOk(daemon, 'port', 'web')).trim();
  const match = /^80\/tcp -> 127\.0\.0\.1:(\d+)$/.exec(port);
  expect(match).not.toBeNull();
  expect(await httpGet(`http://127.0.0.1:${match?.[1]}/`)).toContain('hello from a hyper-services microVM');
  const ps = await dockerOk(daemon, 'ps', '--no-trunc', '--format', '{{.ID}} {{.Names}} {{.Status}}');
  expect(ps).toMatch(new RegExp(`^${id} web Up `));
  const exec = await docker(daemon, ['exec', 'web', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  expect(exec).toEqual(expect.objectContaining({ code: 3, stdout: 'out', stderr: 'err' }));
  expect(await dockerOk(daemon, 'stop', '-t', '5', 'web')).toBe('web');
  expect((await dockerOk(daemon, 'ps', '-a', '--format', '{{.State}}')).trim()).toBe('exited');
  expect(await dockerOk(daemon, 'rm', 'web')).toBe('web');
  expect((await dockerOk(daemon, 'ps', '-a', '-q')).trim()).toBe('');
});

test('run --rm attached: stdout and stderr apart, the exit code, and nothing left', async () => {
  // The image's entrypoint is httpd, as the official httpd images have one: --entrypoint replaces it.
  const script = 'echo one; echo two >&2; echo three; exit 4';
  const result = await docker(daemon, ['run', '--rm', '--entrypoint', 'sh', image, '-c', script]);
  expect(result.stdout).toBe('one\nthree');
  expect(result.stderr).toBe('two');
  expect(result.code).toBe(4);
  expect((await dockerOk(daemon, 'ps', '-a', '-q')).trim()).toBe('');
});

test('exec -i gives the command its stdin and sees its end', async () => {
  await dockerOk(daemon, 'run', '-d', '--name', 'shell', '--entrypoint', 'sleep', image, '600');
  const result = await docker(daemon, ['exec', '-i', 'shell', 'sh', '-e'], {
    input: 'echo from-stdin\ncat /etc/hostname\nexit 5\n',
  });
  expect(result.stdout).toBe('from-stdin\nshell');
  expect(result.code).toBe(5);
  await dockerOk(daemon, 'rm', '-f', 'shell');
});

test('a long exec does not hold up other execs in the same container', async () => {
  await dockerOk(daemon, 'run', '-d', '--name', 'busy', '--entrypoint', 'sleep', image, '600');
  // It waits for a file that only the later exec makes: the two must run side by side.
  const long = docker(daemon, [
    'exec',
    'busy',
    'sh',
    '-c',
    'while [ ! -e /tmp/go ]; do sleep 0.2; done; echo long-done',
  ]);
  expect(await dockerOk(daemon, 'exec', 'busy', 'sh', '-c', 'echo short && touch /tmp/go')).toBe('short');
  expect(await long).toEqual(expect.objectContaining({ code: 0, stdout: 'long-done' }));
  await dockerOk(daemon, 'rm', '-f', 'busy');
});

test('logs: the streams apart, tail, timestamps, follow until the container ends', async () => {
  // stdout and stderr are two pipes, read apart, so lines written close together on the two may be
  // logged in any interleaving (as under Docker): "out 3" can come before "err 2". The tail is
  // taken from lines written 2 s after all those, and the last line 1 s after the rest.
  const script =
    'for i in 1 2 3; do echo out $i; echo err $i >&2; done; sleep 2; echo almost; echo late-err >&2; sleep 1; echo late; exit 0';
  await dockerOk(daemon, 'run', '-d', '--name', 'talker', '--entrypoint', 'sh', image, '-c', script);
  const followed = await docker(daemon, ['logs', '-f', 'talker']);
  expect(followed.stdout).toBe('out 1\nout 2\nout 3\nalmost\nlate');
  expect(followed.stderr).toBe('err 1\nerr 2\nerr 3\nlate-err');
  const tail = await docker(daemon, ['logs', '--tail', '3', 'talker']);
  expect(tail.stdout).toBe('almost\nlate');
  expect(tail.stderr).toBe('late-err');
  const stamped = (await dockerOk(daemon, 'logs', '-t', '--tail', '1', 'talker')).trim();
  const [time = '', text] = stamped.split(' ');
  expect(text).toBe('late');
  // The guest's clock, close to the host's (the VM has a real-time clock).
  expect(Math.abs(Date.parse(time) - Date.now())).toBeLessThan(5 * 60 * 1000);
  await dockerOk(daemon, 'rm', 'talker');
});

test('docker cp into a running container and out of it, with owner and mode kept', async () => {
  await dockerOk(daemon, 'run', '-d', '--name', 'files', '--entrypoint', 'sleep', image, '600');
  const host = await mkdtemp('/tmp/hyper-cp-');
  try {
    await mkdir(path.join(host, 'tree', 'sub'), { recursive: true });
    await writeFile(path.join(host, 'tree', 'sub', 'note.txt'), 'copied in\n', { mode: 0o640 });
    await dockerOk(daemon, 'cp', path.join(host, 'tree'), 'files:/tmp/');
    expect(await dockerOk(daemon, 'exec', 'files', 'cat', '/tmp/tree/sub/note.txt')).toBe('copied in');
    expect(await dockerOk(daemon, 'exec', 'files', 'stat', '-c', '%a', '/tmp/tree/sub/note.txt')).toBe('640');

    await dockerOk(
      daemon,
      'exec',
      'files',
      'sh',
      '-c',
      'mkdir -p /srv/out && echo made inside > /srv/out/result',
    );
    await dockerOk(daemon, 'cp', 'files:/srv/out', path.join(host, 'back'));
    expect(await readFile(path.join(host, 'back', 'result'), 'utf8')).toBe('made inside\n');

    const missing = await docker(daemon, ['cp', 'files:/no/such/path', host]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No such container:path: files:/no/such/path');
  } finally {
    await rm(host, { recursive: true, force: true });
    await dockerOk(daemon, 'rm', '-f', 'files');
  }
});

test("a bind mount is shared live both ways, with a non-root user's ownership; a missing source is made", async () => {
  const host = await mkdtemp('/tmp/hyper-bind-');
  try {
    const shared = path.join(host, 'shared');
    await mkdir(shared);
    await chown(shared, 1000, 1000);
    await dockerOk(
      daemon,
      'run',
      '-d',
      '--name',
      'binder',
      '-u',
      '1000:1000',
      '-v',
      `${shared}:/work`,
      '-v',
      `${path.join(host, 'made-by-docker')}:/made`,
      '--entrypoint',
      'sleep',
      image,
      '600',
    );
    // Written in the guest by uid 1000: on the host at once, owned by 1000, with the umask's mode.
    await dockerOk(daemon, 'exec', 'binder', 'sh', '-c', 'echo from the guest > /work/out.txt');
    const info = await stat(path.join(shared, 'out.txt'));
    expect([info.uid, info.gid, info.mode & 0o777]).toEqual([1000, 1000, 0o644]);
    expect(await readFile(path.join(shared, 'out.txt'), 'utf8')).toBe('from the guest\n');
    // Written on the host while the VM runs: seen in the guest.
    await writeFile(path.join(shared, 'in.txt'), 'from the host\n');
    expect(await dockerOk(daemon, 'exec', 'binder', 'cat', '/work/in.txt')).toBe('from the host');
    // Docker's -v makes a missing source as a directory.
    expect((await stat(path.join(host, 'made-by-docker'))).isDirectory()).toBe(true);
    await dockerOk(daemon, 'rm', '-f', 'binder');
  } finally {
    await rm(host, { recursive: true, force: true });
  }
});

test('bad input: unknown container, name conflict, refused field, unknown endpoint', async () => {
  const missing = await docker(daemon, ['inspect', 'nope']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain('No such object: nope');

  const refused = await docker(daemon, ['create', '--pid', 'host', image]);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain(
    'HostConfig.PidMode: a container cannot share another PID namespace: it has a kernel of its own',
  );

  const hostNet = await docker(daemon, ['create', '--network', 'host', image]);
  expect(hostNet.stderr).toContain('HostConfig.NetworkMode: "host" would put the container on the host');

  await dockerOk(daemon, 'create', '--name', 'taken', image);
  const conflict = await docker(daemon, ['create', '--name', 'taken', image]);
  expect(conflict.stderr).toContain('Conflict. The container name "/taken" is already in use');
  await dockerOk(daemon, 'rm', 'taken');

  const unknown = await socketRequest(daemon.socket, 'POST', '/v1.41/swarm/init', '{}');
  expect(unknown.status).toBe(501);
  expect(JSON.parse(unknown.body)).toEqual({ message: 'hyper-services does not implement POST /swarm/init' });

  const malformed = await socketRequest(daemon.socket, 'POST', '/containers/create', '{"Image": ');
  expect(malformed.status).toBe(400);
  expect(JSON.parse(malformed.body).message).toMatch(/^malformed JSON in the request body/);
});

test('SIGTERM stops the daemon while a container runs; a new daemon finds the container again', async () => {
  await dockerOk(
    daemon,
    'run',
    '-d',
    '--name',
    'outlives',
    '--health-cmd',
    'true',
    '--entrypoint',
    'sleep',
    image,
    '600',
  );
  expect(await daemon.stop()).toBe(0);
  // Without --stop-containers, what it started keeps running, as a Docker daemon with live-restore does.
  expect((await qemuProcessesUnder(stateDir)).length).toBe(1);
  daemon = await startDaemon(stateDir, { HYPER_ACCEL: 'tcg' });
  expect((await dockerOk(daemon, 'ps', '--format', '{{.Names}} {{.State}}')).trim()).toBe('outlives running');
  await dockerOk(daemon, 'rm', '-f', 'outlives');
});
