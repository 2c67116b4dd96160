import { dockerCliLayout } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { type TestRegistry } from '../../support/registry/registry.js';
import {
  docker,
  dockerOk,
  type RunningDaemon,
  socketRequest,
  startApiFixture,
  stopApiFixture,
} from '../../support/serve.js';

// The Docker socket bound into a container (the runner's job container,
// Testcontainers' Ryuk) is `hyper serve`'s own API, carried over a
// virtio-serial port by guest/hyper-relay.c: the docker CLI inside a microVM
// drives its siblings, which are microVMs too.
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let image: string;
let cli: string;

beforeAll(async () => {
  ({ registry, image, stateDir, daemon } = await startApiFixture('/tmp/hyper-sock-it-'));
  cli = await pushLayout(registry, await dockerCliLayout(), 'library/docker', 'cli');
});

afterAll(async () => {
  await stopApiFixture({ registry, daemon, stateDir });
});

test('docker run --rm with the socket bound in: the CLI inside sees this daemon and itself', async () => {
  const result = await docker(daemon, [
    'run',
    '--rm',
    '--name',
    'inside',
    '-v',
    '/var/run/docker.sock:/var/run/docker.sock',
    cli,
    'sh',
    '-c',
    "docker version --format '{{.Server.APIVersion}}' && docker ps --format '{{.Names}} {{.Image}}'",
  ]);
  expect(result).toEqual(expect.objectContaining({ code: 0, stdout: `1.47\ninside ${cli}` }));
});

test('a job container makes, execs into and removes a sibling microVM through the socket', async () => {
  const job = (
    await dockerOk(
      daemon,
      'run',
      '-d',
      '--name',
      'job',
      '-v',
      '/var/run/docker.sock:/var/run/docker.sock',
      cli,
      'sleep',
      '600',
    )
  ).trim();
  const inJob = (...args: string[]): Promise<string> => dockerOk(daemon, 'exec', job, ...args);

  // docker run -d from inside: the daemon pulls from the registry and boots the sibling.
  await inJob('docker', 'run', '-d', '--name', 'sibling', image);
  expect((await dockerOk(daemon, 'ps', '--format', '{{.Names}}')).split('\n').sort()).toEqual([
    'job',
    'sibling',
  ]);

  // A hijacked exec with stdin, closed half-way, through the relay.
  expect(await inJob('sh', '-c', 'echo through-the-relay | docker exec -i sibling cat')).toBe(
    'through-the-relay',
  );

  await inJob('docker', 'rm', '-f', 'sibling');
  expect(await inJob('docker', 'ps', '-a', '--format', '{{.Names}}')).toBe('job');
  await dockerOk(daemon, 'rm', '-f', job);
});

test("the daemon's own socket path bound in, as Testcontainers binds it, at a path of the container's choosing", async () => {
  const result = await docker(daemon, [
    'run',
    '--rm',
    '-v',
    `${daemon.socket}:/var/lib/api/docker.sock`,
    '-e',
    'DOCKER_HOST=unix:///var/lib/api/docker.sock',
    cli,
    'sh',
    '-c',
    'ls -l /var/lib/api/docker.sock && docker info --format "{{.OSType}}"',
  ]);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/^srw-rw-rw- .*\/var\/lib\/api\/docker\.sock\nlinux$/);
});

test('a Docker socket bound where the guest cannot serve it is a 400 naming the bind, and nothing is made', async () => {
  const target = `/${'d/'.repeat(60)}docker.sock`;
  const create = await socketRequest(
    daemon.socket,
    'POST',
    '/v1.41/containers/create?name=toolong',
    JSON.stringify({ Image: cli, HostConfig: { Binds: [`/var/run/docker.sock:${target}`] } }),
  );
  expect({ status: create.status, body: JSON.parse(create.body) }).toEqual({
    status: 400,
    body: {
      message: `HostConfig.Binds: "/var/run/docker.sock:${target}": a socket path in the container is at most 107 bytes`,
    },
  });
  expect((await docker(daemon, ['ps', '-a', '-q'])).stdout).toBe('');
});
