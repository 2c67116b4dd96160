import { GenericContainer, Network, Wait, type StartedTestContainer } from 'testcontainers';
import { httpGet } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { type TestRegistry } from '../../support/registry/registry.js';
import { docker, type RunningDaemon, startApiFixture, stopApiFixture } from '../../support/serve.js';

// The testcontainers npm package (12.x) against `hyper serve`, as a test
// suite would use it: Ryuk off (TESTCONTAINERS_RYUK_DISABLED), each
// container a real microVM from a real registry.
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let image: string;
const restoreEnv = snapshotEnv();
const started: StartedTestContainer[] = [];

beforeAll(async () => {
  ({ registry, image, stateDir, daemon } = await startApiFixture('/tmp/hyper-tc-it-'));
  process.env.DOCKER_HOST = daemon.env.DOCKER_HOST;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
});

afterAll(async () => {
  for (const container of started) await container.stop().catch(() => undefined);
  await stopApiFixture({ registry, daemon, stateDir });
  restoreEnv();
});

async function start(container: GenericContainer): Promise<StartedTestContainer> {
  const running = await container.start();
  started.push(running);
  return running;
}

test('a GenericContainer with an exposed port, ready by the listening-ports wait', async () => {
  const web = await start(
    new GenericContainer(image).withExposedPorts(80).withWaitStrategy(Wait.forListeningPorts()),
  );
  const url = `http://${web.getHost()}:${web.getMappedPort(80)}/`;
  expect(await httpGet(url)).toContain('hello from a hyper-services microVM');
  const result = await web.exec(['sh', '-c', 'echo out; echo err >&2; exit 2']);
  expect(result).toEqual(expect.objectContaining({ exitCode: 2, stdout: 'out\n', stderr: 'err\n' }));
  await web.stop();
  expect((await docker(daemon, ['ps', '-a', '-q'])).stdout).toBe('');
});

test('content copied in before the start is there when the service starts', async () => {
  const web = await start(
    new GenericContainer(image)
      .withExposedPorts(80)
      .withCopyContentToContainer([
        { content: 'copied before start\n', target: '/www/copied.txt', mode: 0o644 },
      ]),
  );
  const url = `http://${web.getHost()}:${web.getMappedPort(80)}/copied.txt`;
  expect(await httpGet(url)).toBe('copied before start\n');
  // And after the start, into the running VM.
  await web.copyContentToContainer([{ content: 'copied while running\n', target: '/www/later.txt' }]);
  expect(await httpGet(`http://${web.getHost()}:${web.getMappedPort(80)}/later.txt`)).toBe(
    'copied while running\n',
  );
  await web.stop();
});

test('the log message and health check wait strategies', async () => {
  const logged = await start(
    new GenericContainer(image)
      .withEntrypoint(['sh', '-c'])
      .withCommand(['sleep 1; echo "server is ready"; exec sleep 600'])
      .withWaitStrategy(Wait.forLogMessage('server is ready')),
  );
  expect((await logged.exec(['cat', '/etc/hostname'])).output.trim()).toBe(
    logged.getName().replace(/^\//, ''),
  );
  const healthy = await start(
    new GenericContainer(image)
      .withHealthCheck({ test: ['CMD-SHELL', 'test -e /tmp/up'], interval: 1000, retries: 5, timeout: 1000 })
      .withEntrypoint(['sh', '-c'])
      .withCommand(['sleep 2; touch /tmp/up; exec sleep 600'])
      .withWaitStrategy(Wait.forHealthCheck()),
  );
  expect((await healthy.exec(['test', '-e', '/tmp/up'])).exitCode).toBe(0);
  await logged.stop();
  await healthy.stop();
});

test('a Network: one container reaches another by its alias', async () => {
  const network = await new Network().start();
  try {
    const web = await start(
      new GenericContainer(image).withNetwork(network).withNetworkAliases('web').withExposedPorts(80),
    );
    const client = await start(
      new GenericContainer(image).withNetwork(network).withEntrypoint(['sleep']).withCommand(['600']),
    );
    const fetched = await client.exec(['wget', '-qO-', 'http://web/']);
    expect(fetched.exitCode).toBe(0);
    expect(fetched.output).toContain('hello from a hyper-services microVM');
    await client.stop();
    await web.stop();
  } finally {
    await network.stop();
  }
});
