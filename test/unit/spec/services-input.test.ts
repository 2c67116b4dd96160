import { parseServicesInput } from '../../../src/spec/services-input.js';
import { specError } from './spec-error.js';

const SOURCE = 'input "services"';
const KEYS =
  'image, credentials, env, ports, volumes, options, command, entrypoint, healthcheck, memory, cpus, depends-on';
const SUPPORTED =
  '--cpus, --entrypoint, -e/--env, --expose, --health-cmd, --health-interval, --health-retries, --health-start-period, --health-timeout, -m/--memory, --name, --network-alias, --no-healthcheck, --tmpfs, -u/--user, -w/--workdir';
const tcp = (hostPort: number, containerPort: number) => ({
  hostIp: '127.0.0.1',
  hostPort,
  containerPort,
  protocol: 'tcp',
});

describe('parseServicesInput: good input', () => {
  test("GitHub's keys, with options parsed", () => {
    const text = `
db:
  image: postgres:16
  credentials:
    username: bot
    password: \${{ secrets.TOKEN }}
  env:
    POSTGRES_PASSWORD: postgres
    PGPORT: 5432
    RATIO: 1.10
  ports:
    - 5432:5432
    - "6543"
    - 9000
  volumes:
    - pgdata:/var/lib/postgresql/data
  options: >-
    --health-cmd "pg_isready -U postgres" --health-interval 10s
    --health-timeout=5s --health-retries 5 --health-start-period 1m
    -e EXTRA=1 --env=PGPORT=1 -m 1g --cpus 1.5 --name db
    -u postgres -w /srv --tmpfs /run
`;
    expect(parseServicesInput(text)).toEqual([
      {
        name: 'db',
        image: 'postgres:16',
        credentials: { username: 'bot', password: '${{ secrets.TOKEN }}' },
        env: ['EXTRA=1', 'PGPORT=1', 'POSTGRES_PASSWORD=postgres', 'PGPORT=5432', 'RATIO=1.10'],
        ports: [tcp(5432, 5432), tcp(0, 6543), tcp(0, 9000)],
        volumes: ['pgdata:/var/lib/postgresql/data'],
        healthcheck: {
          test: ['CMD-SHELL', 'pg_isready -U postgres'],
          intervalMs: 10_000,
          timeoutMs: 5_000,
          startPeriodMs: 60_000,
          retries: 5,
        },
        memoryMiB: 1024,
        cpus: 2,
        dependsOn: [],
        user: 'postgres',
        workdir: '/srv',
        tmpfs: ['/run'],
      },
    ]);
  });

  test('our extra keys, depends-on as a list and as a map', () => {
    const text = `
cache:
  image: redis
  command: redis-server --appendonly "yes"
  healthcheck:
    test: ["CMD", "redis-cli", "ping"]
    interval: 2s
  memory: 256m
  cpus: 2
queue:
  image: ghcr.io/acme/queue@sha256:${'a'.repeat(64)}
  entrypoint: ["/bin/queue", "--fast"]
  command: [serve, --port, 8080]
  healthcheck:
    test: curl -f http://localhost:8080/
    timeout: 1s
    retries: 2
  depends-on: [cache]
web:
  image: nginx
  healthcheck:
    disable: true
  depends-on:
    cache: { condition: service_healthy }
    queue:
`;
    const [cache, queue, web] = parseServicesInput(text);
    expect(cache).toEqual({
      name: 'cache',
      image: 'redis',
      env: [],
      ports: [],
      volumes: [],
      command: ['redis-server', '--appendonly', 'yes'],
      healthcheck: {
        test: ['CMD', 'redis-cli', 'ping'],
        intervalMs: 2000,
        timeoutMs: 30_000,
        startPeriodMs: 0,
        retries: 3,
      },
      memoryMiB: 256,
      cpus: 2,
      dependsOn: [],
      tmpfs: [],
    });
    expect(queue).toMatchObject({
      entrypoint: ['/bin/queue', '--fast'],
      command: ['serve', '--port', '8080'],
      healthcheck: { test: ['CMD-SHELL', 'curl -f http://localhost:8080/'], timeoutMs: 1000, retries: 2 },
      dependsOn: [{ service: 'cache', condition: 'service_started' }],
    });
    expect(web).toMatchObject({
      healthcheck: 'none',
      dependsOn: [
        { service: 'cache', condition: 'service_healthy' },
        { service: 'queue', condition: 'service_started' },
      ],
    });
  });

  test.each([
    ['--no-healthcheck', { healthcheck: 'none' }],
    ['--entrypoint /bin/sh', { entrypoint: ['/bin/sh'] }],
    ['--entrypoint ""', { entrypoint: [] }],
    [
      "--health-cmd 'redis-cli ping'",
      { healthcheck: { test: ['CMD-SHELL', 'redis-cli ping'], intervalMs: 30_000 } },
    ],
    ['--memory=512m -m 768m', { memoryMiB: 768 }],
    ['-eA=1 -e B=2', { env: ['A=1', 'B=2'] }],
  ])('options: %s', (options, expected) => {
    const [spec] = parseServicesInput(`svc:\n  image: busybox\n  options: ${JSON.stringify(options)}\n`);
    expect(spec).toMatchObject(expected);
  });

  test('an empty input has no services; a source name is used in messages', () => {
    expect(parseServicesInput('')).toEqual([]);
    expect(parseServicesInput('# nothing\n')).toEqual([]);
    expect(() => parseServicesInput('db: {}', 'services.yml')).toThrow('services.yml: services.db (line 1)');
  });
});

describe('parseServicesInput: bad input, exact messages', () => {
  test.each([
    [
      'malformed YAML',
      'db:\n  image: [postgres\nweb: x\n',
      `${SOURCE}: YAML error at line 3: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    ],
    [
      'a duplicate id',
      'db:\n  image: a\ndb:\n  image: b\n',
      `${SOURCE}: YAML error at line 3: Map keys must be unique`,
    ],
    [
      'an unknown key',
      'db:\n  image: postgres\n  imgae: postgres\n',
      `${SOURCE}: services.db.imgae (line 3) is not a known key; valid keys: ${KEYS}`,
    ],
    [
      'a bad port',
      'db:\n  image: postgres\n  ports:\n    - 5432:5432\n    - 54x2\n',
      `${SOURCE}: services.db.ports[1] (line 5): "54x2" is not a port mapping: "54x2" is not a port; use "HOST:CONTAINER", "CONTAINER" or "IP:HOST:CONTAINER", optionally with "/tcp" or "/udp"`,
    ],
    [
      'a port given as a map',
      'db:\n  image: postgres\n  ports:\n    - { target: 80 }\n',
      `${SOURCE}: services.db.ports[0] (line 4): expected a port mapping such as "8080:80", got a map`,
    ],
    [
      'ports not a list',
      'db:\n  image: postgres\n  ports: 5432:5432\n',
      `${SOURCE}: services.db.ports (line 3): expected a list, got a string`,
    ],
    [
      'a missing image',
      'db:\n  env:\n    A: 1\n',
      `${SOURCE}: services.db (line 1): service "db" has no image; add image: NAME[:TAG]`,
    ],
    [
      'an image that is not a reference',
      'db:\n  image: Postgres\n',
      `${SOURCE}: services.db.image (line 2): "Postgres" is not a valid image reference: repository names must be lowercase`,
    ],
    [
      'an image that is a list',
      'db:\n  image: [postgres]\n',
      `${SOURCE}: services.db.image (line 2): expected an image reference such as postgres:16, got a list`,
    ],
    [
      'a service that is not a map',
      'db: postgres\n',
      `${SOURCE}: services.db (line 1): expected a map with at least image:, got a string`,
    ],
    ['a top level that is a list', '- db\n', `${SOURCE}: services (line 1): expected a map, got a list`],
    [
      'a merge key that refers to its own map',
      'db: &db\n  image: postgres\n  <<: *db\n',
      `${SOURCE}: services.db (line 3): a merge key (<<) refers to a map that contains it`,
    ],
    [
      'a bad service id',
      '"my db":\n  image: postgres\n',
      `${SOURCE}: services.my db (line 1): "my db" is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)`,
    ],
    [
      'env not a map',
      'db:\n  image: postgres\n  env: [A=1]\n',
      `${SOURCE}: services.db.env (line 3): expected a map, got a list`,
    ],
    [
      'an env value that is null',
      'db:\n  image: postgres\n  env:\n    A:\n',
      `${SOURCE}: services.db.env.A (line 4): expected a string, number or boolean, got null`,
    ],
    [
      'an env value that is a map',
      'db:\n  image: postgres\n  env:\n    A: { b: 1 }\n',
      `${SOURCE}: services.db.env.A (line 4): expected a string, number or boolean, got a map`,
    ],
    [
      'a volume that is not a string',
      'db:\n  image: postgres\n  volumes:\n    - 5\n',
      `${SOURCE}: services.db.volumes[0] (line 4): expected a string, got a number`,
    ],
    [
      'credentials without a password',
      'db:\n  image: postgres\n  credentials:\n    username: u\n',
      `${SOURCE}: services.db.credentials (line 3): password is missing; credentials need username and password`,
    ],
    [
      'a credentials typo',
      'db:\n  image: postgres\n  credentials:\n    user: u\n',
      `${SOURCE}: services.db.credentials.user (line 4) is not a known key; valid keys: username, password`,
    ],
    [
      'an unsupported option',
      'db:\n  image: postgres\n  options: --health-cmd true --privileged\n',
      `${SOURCE}: services.db.options (line 3): --privileged is not supported; supported options: ${SUPPORTED}`,
    ],
    [
      'an unsupported short option',
      'db:\n  image: postgres\n  options: -p 80:80\n',
      `${SOURCE}: services.db.options (line 3): -p is not supported; supported options: ${SUPPORTED}`,
    ],
    [
      'a word that is not an option',
      'db:\n  image: postgres\n  options: --cpus 1 2\n',
      `${SOURCE}: services.db.options (line 3): "2" is not an option; options start with - or --`,
    ],
    [
      'an option without its value',
      'db:\n  image: postgres\n  options: --health-interval\n',
      `${SOURCE}: services.db.options (line 3): --health-interval needs a value`,
    ],
    [
      'a flag with a value',
      'db:\n  image: postgres\n  options: --no-healthcheck=yes\n',
      `${SOURCE}: services.db.options (line 3): --no-healthcheck takes no value`,
    ],
    [
      'a bad duration option',
      'db:\n  image: postgres\n  options: --health-cmd true --health-interval 10\n',
      `${SOURCE}: services.db.options (line 3): --health-interval: "10" is not a duration; use a number with a unit: 500ms, 10s, 1m30s, 1h`,
    ],
    [
      'a bad memory option',
      'db:\n  image: postgres\n  options: -m 32m\n',
      `${SOURCE}: services.db.options (line 3): --memory: "32m" is less than 64 MiB; give at least 64m`,
    ],
    [
      '-e without a value',
      'db:\n  image: postgres\n  options: -e FOO\n',
      `${SOURCE}: services.db.options (line 3): --env: "FOO" is not KEY=VALUE`,
    ],
    [
      'an unterminated quote',
      'db:\n  image: postgres\n  options: --health-cmd "pg_isready\n',
      `${SOURCE}: services.db.options (line 3): unterminated " quote in "--health-cmd \\"pg_isready"`,
    ],
    [
      'a different --name',
      'db:\n  image: postgres\n  options: --name pg\n',
      `${SOURCE}: services.db.options (line 3): --name "pg" differs from the service id "db"; the id is the name, so drop --name`,
    ],
    [
      'health options without --health-cmd',
      'db:\n  image: postgres\n  options: --health-interval 5s\n',
      `${SOURCE}: services.db.options (line 3): --health-interval: changing only part of the image's HEALTHCHECK is not supported; give the test as well (--health-cmd)`,
    ],
    [
      '--no-healthcheck with --health-cmd',
      'db:\n  image: postgres\n  options: --no-healthcheck --health-cmd true\n',
      `${SOURCE}: services.db.options (line 3): --no-healthcheck conflicts with --health-cmd`,
    ],
    [
      'a key and an option for one setting',
      'db:\n  image: postgres\n  memory: 1g\n  options: --memory 2g\n',
      `${SOURCE}: services.db.memory (line 3): also set by --memory in options; set it in one place`,
    ],
    [
      'options not a string',
      'db:\n  image: postgres\n  options: [--cpus, "1"]\n',
      `${SOURCE}: services.db.options (line 3): expected a string of docker create options, got a list`,
    ],
    [
      'a bad memory key',
      'db:\n  image: postgres\n  memory: 512\n',
      `${SOURCE}: services.db.memory (line 3): "512" is less than 64 MiB (a bare number is bytes; write 512m for MiB); give at least 64m`,
    ],
    [
      'a bad cpus key',
      'db:\n  image: postgres\n  cpus: none\n',
      `${SOURCE}: services.db.cpus (line 3): "none" is not a number of CPUs; use a number above 0, such as 1, 2 or 1.5`,
    ],
    [
      'a bad healthcheck interval',
      'db:\n  image: postgres\n  healthcheck:\n    test: pg_isready\n    interval: 10\n',
      `${SOURCE}: services.db.healthcheck.interval (line 5): "10" is not a duration; use a number with a unit: 500ms, 10s, 1m30s, 1h`,
    ],
    [
      'a healthcheck test led by a program',
      'db:\n  image: postgres\n  healthcheck:\n    test: [pg_isready]\n',
      `${SOURCE}: services.db.healthcheck.test (line 4): a test list starts with "CMD", "CMD-SHELL" or "NONE", not "pg_isready"; a plain string runs through the shell`,
    ],
    [
      'a healthcheck CMD with no program',
      'db:\n  image: postgres\n  healthcheck:\n    test: [CMD]\n',
      `${SOURCE}: services.db.healthcheck.test (line 4): CMD needs a command after it`,
    ],
    [
      'a healthcheck without a test',
      'db:\n  image: postgres\n  healthcheck:\n    interval: 5s\n',
      `${SOURCE}: services.db.healthcheck (line 3): changing only part of the image's HEALTHCHECK is not supported; give the test as well`,
    ],
    [
      'a healthcheck both disabled and tested',
      'db:\n  image: postgres\n  healthcheck:\n    test: pg_isready\n    disable: true\n',
      `${SOURCE}: services.db.healthcheck.disable (line 5): disable: true cannot go with a test`,
    ],
    [
      'a healthcheck typo',
      'db:\n  image: postgres\n  healthcheck:\n    tset: pg_isready\n',
      `${SOURCE}: services.db.healthcheck.tset (line 4) is not a known key; valid keys: test, interval, timeout, start_period, start_interval, retries, disable`,
    ],
    [
      'depends-on not a list or map',
      'db:\n  image: postgres\n  depends-on: cache\n',
      `${SOURCE}: services.db.depends-on (line 3): expected a list of service ids or a map of id: { condition }, got a string`,
    ],
    [
      'an unknown condition',
      'db:\n  image: postgres\n  depends-on:\n    cache:\n      condition: started\n',
      `${SOURCE}: services.db.depends-on.cache.condition (line 5): "started" is not a condition; use service_started or service_healthy`,
    ],
    [
      'service_completed_successfully',
      'db:\n  image: postgres\n  depends-on:\n    migrate: { condition: service_completed_successfully }\n',
      `${SOURCE}: services.db.depends-on.migrate.condition (line 4): service_completed_successfully is not supported: services run for the whole job; use service_started or service_healthy`,
    ],
  ])('%s', (_what, text, message) => {
    expect(specError(() => parseServicesInput(text))).toBe(message);
  });
});
