import { parseComposeFile, parseComposeProject } from '../../../src/spec/compose.js';
import { memoryFiles } from './memory-files.js';
import { specError } from './spec-error.js';

const FILE = '/repo/ci/compose.yml';

const files = memoryFiles;
const noFiles = files({});
const parse = (text: string, variables = {}) => parseComposeFile(text, FILE, noFiles, variables);

describe('parseComposeFile: good files', () => {
  test('every supported key', () => {
    const text = `
version: "3.9"
name: shop
x-common: &common
  mem_limit: 1.5g
  cpus: 0.5
services:
  db:
    <<: *common
    image: postgres:\${PG_VERSION:-16}
    container_name: shop-db
    env_file:
      - db.env
      - path: ../secrets/missing.env
        required: false
    environment:
      POSTGRES_USER: \${DB_USER}
      POSTGRES_DB: shop
      FROM_HOST:
      NOT_ON_HOST:
    ports:
      - "5432:5432"
      - 8125:8125/udp
      - target: 9187
      - target: 9000
        published: "19000"
        host_ip: 0.0.0.0
        protocol: udp
      - target: 80
        published: 8080
        host_ip: "::1"
    volumes:
      - pgdata:/var/lib/postgresql/data
      - type: bind
        source: ./init
        target: /docker-entrypoint-initdb.d
        read_only: true
      - type: volume
        target: /anon
      - type: tmpfs
        target: /scratch
    command: postgres -c "shared_buffers=256MB"
    entrypoint: ["docker-entrypoint.sh"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $\${POSTGRES_USER}"]
      interval: 1m30s
      timeout: 500ms
      start_period: 2.5s
      retries: 10
    working_dir: /var/lib/postgresql
    user: "999:999"
    tmpfs: /run
    networks: [backend]
  web:
    image: nginx
    mem_limit: 268435456
    environment:
      - MODE=production
      - FROM_HOST
      - NOT_ON_HOST
    tmpfs:
      - /tmp
      - /var/cache/nginx:size=64m
    user: "101"
    healthcheck:
      test: ["NONE"]
    depends_on:
      db:
        condition: service_healthy
    networks:
      backend:
      frontend: {}
  worker:
    image: busybox
    command: [sleep, "3600"]
    entrypoint: ""
    depends_on: [db, web]
volumes:
  pgdata:
  cache:
    driver: local
networks:
  backend:
  frontend: {}
`;
    const readFile = files({
      '/repo/ci/db.env': '# db settings\nPOSTGRES_PASSWORD="s3cret"\nexport POSTGRES_DB=ignored\n',
    });
    const project = parseComposeProject(text, FILE, readFile, {
      variables: { DB_USER: 'app', FROM_HOST: 'h' },
    });
    expect(project.volumes).toEqual(['pgdata', 'cache']);
    const [db, web, worker] = project.services;
    expect(db).toEqual({
      name: 'db',
      baseDir: '/repo/ci',
      image: 'postgres:16',
      env: [
        'POSTGRES_PASSWORD=s3cret',
        'POSTGRES_DB=ignored',
        'POSTGRES_USER=app',
        'POSTGRES_DB=shop',
        'FROM_HOST=h',
      ],
      ports: [
        { hostIp: '127.0.0.1', hostPort: 5432, containerPort: 5432, protocol: 'tcp' },
        { hostIp: '127.0.0.1', hostPort: 8125, containerPort: 8125, protocol: 'udp' },
        { hostIp: '127.0.0.1', hostPort: 0, containerPort: 9187, protocol: 'tcp' },
        { hostIp: '0.0.0.0', hostPort: 19000, containerPort: 9000, protocol: 'udp' },
        { hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      ],
      volumes: ['pgdata:/var/lib/postgresql/data', './init:/docker-entrypoint-initdb.d:ro', '/anon'],
      command: ['postgres', '-c', 'shared_buffers=256MB'],
      entrypoint: ['docker-entrypoint.sh'],
      healthcheck: {
        test: ['CMD-SHELL', 'pg_isready -U ${POSTGRES_USER}'],
        intervalMs: 90_000,
        timeoutMs: 500,
        startPeriodMs: 2_500,
        retries: 10,
      },
      memoryMiB: 1536,
      cpus: 1,
      dependsOn: [],
      workdir: '/var/lib/postgresql',
      user: '999:999',
      tmpfs: ['/run', '/scratch'],
      aliases: ['shop-db'],
      containerName: 'shop-db',
    });
    expect(web).toEqual({
      name: 'web',
      baseDir: '/repo/ci',
      image: 'nginx',
      env: ['MODE=production', 'FROM_HOST=h'],
      ports: [],
      volumes: [],
      healthcheck: 'none',
      memoryMiB: 256,
      dependsOn: [{ service: 'db', condition: 'service_healthy' }],
      user: '101',
      tmpfs: ['/tmp', '/var/cache/nginx:size=64m'],
    });
    expect(worker).toMatchObject({
      command: ['sleep', '3600'],
      entrypoint: [],
      dependsOn: [
        { service: 'db', condition: 'service_started' },
        { service: 'web', condition: 'service_started' },
      ],
    });
  });

  test('env_file: one path, relative to the compose file, read through readFile', () => {
    const readFile = files({ '/repo/ci/app.env': 'A=1\nB="two words"\n', '/etc/shared.env': 'C=3' });
    const text =
      'services:\n  app:\n    image: busybox\n    env_file: app.env\n  other:\n    image: busybox\n    env_file: [/etc/shared.env]\n';
    const [app, other] = parseComposeFile(text, FILE, readFile);
    expect(app?.env).toEqual(['A=1', 'B=two words']);
    expect(other?.env).toEqual(['C=3']);
  });

  test.each([
    ['${TAG}', { TAG: '1.2' }, '1.2'],
    ['${TAG:-latest}', {}, 'latest'],
    ['${TAG:-latest}', { TAG: '' }, 'latest'],
    ['${TAG-latest}', { TAG: '' }, ''],
    ['${TAG:+set}', { TAG: 'x' }, 'set'],
    ['$TAG-$TAG', { TAG: 'musl' }, 'musl-musl'],
    ['${MISSING}', {}, ''],
  ])('interpolation: %s with %j', (expression, variables, value) => {
    const text = `services:\n  app:\n    image: busybox\n    environment:\n      V: "${expression}"\n`;
    expect(parse(text, variables)[0]?.env).toEqual([`V=${value}`]);
  });

  test('interpolation applies to values, not keys, and $$ is a literal $', () => {
    const text =
      'services:\n  app:\n    image: busybox\n    environment:\n      $$KEY: $${NOT} ${SET}\n    cpus: ${CPUS}\n';
    expect(parse(text, { SET: 'yes', CPUS: '3' })[0]).toMatchObject({ env: ['$$KEY=${NOT} yes'], cpus: 3 });
  });

  test('networks without options, top-level and per service, are accepted', () => {
    const text = 'services:\n  app:\n    image: busybox\n    networks: { default: }\nnetworks:\n  default:\n';
    expect(parse(text)).toHaveLength(1);
  });

  test('an empty services map has no services', () => {
    expect(parse('services: {}\n')).toEqual([]);
  });
});

describe('parseComposeFile: bad files, exact messages', () => {
  test.each([
    [
      'malformed YAML',
      'services:\n  app:\n    image: busybox\n   ports: []\n',
      `${FILE}: YAML error at line 4: All mapping items must start at the same column`,
    ],
    [
      'tabs',
      'services:\n  app:\n\timage: busybox\n',
      `${FILE}: YAML error at line 3: Tabs are not allowed as indentation`,
    ],
    ['no services', 'version: "3"\n', `${FILE}: services: is missing; a compose file needs a services: map`],
    ['an empty file', '', `${FILE}: the file is empty; a compose file needs a services: map`],
    [
      'an unknown top-level key',
      'services: {}\nconfig: {}\n',
      `${FILE}: config (line 2) is not a known key; did you mean configs?`,
    ],
    [
      'build',
      'services:\n  app:\n    build: .\n    image: app\n',
      `${FILE}: services.app.build (line 3): images must come from a registry; hyper-services does not build images (use image:)`,
    ],
    [
      'an unknown service key',
      'services:\n  app:\n    image: busybox\n    restrat: always\n',
      `${FILE}: services.app.restrat (line 4) is not a known key; did you mean restart?`,
    ],
    [
      'a missing image',
      'services:\n  app:\n    command: sleep 1\n',
      `${FILE}: services.app (line 2): service "app" has no image; add image: NAME[:TAG]`,
    ],
    [
      'a bad short port',
      'services:\n  app:\n    image: busybox\n    ports: ["54x2"]\n',
      `${FILE}: services.app.ports[0] (line 4): "54x2" is not a port mapping: "54x2" is not a port; use "HOST:CONTAINER", "CONTAINER" or "IP:HOST:CONTAINER", optionally with "/tcp" or "/udp"`,
    ],
    [
      'a long port without target',
      'services:\n  app:\n    image: busybox\n    ports:\n      - published: 80\n',
      `${FILE}: services.app.ports[0] (line 5): target is missing; give the container port`,
    ],
    [
      'a long port with an unknown key',
      'services:\n  app:\n    image: busybox\n    ports:\n      - target: 80\n        hostip: 0.0.0.0\n',
      `${FILE}: services.app.ports[0].hostip (line 6) is not a known key; did you mean host_ip?`,
    ],
    [
      'a long port with a bad protocol',
      'services:\n  app:\n    image: busybox\n    ports:\n      - { target: 53, protocol: sctp }\n',
      `${FILE}: services.app.ports[0] (line 5): "53/sctp" is not a port mapping: protocol "sctp" is not tcp or udp`,
    ],
    [
      'ports not a list',
      'services:\n  app:\n    image: busybox\n    ports: { target: 80 }\n',
      `${FILE}: services.app.ports (line 4): expected a list, got a map`,
    ],
    [
      'a volume of an unknown type',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: npipe\n        target: /x\n',
      `${FILE}: services.app.volumes[0] (line 5): type is "npipe"; use volume, bind, tmpfs or image`,
    ],
    [
      'an image volume without source',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: image\n        target: /x\n',
      `${FILE}: services.app.volumes[0] (line 5): source is missing; an image volume needs the image to mount`,
    ],
    [
      'an image volume asked to be writable',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: image\n        source: alpine\n        target: /x\n        read_only: false\n',
      `${FILE}: services.app.volumes[0].read_only (line 8): an image volume is always read-only: an image's filesystem is not written`,
    ],
    [
      'an image subpath that climbs out',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: image\n        source: alpine\n        target: /x\n        image: { subpath: ../etc }\n',
      `${FILE}: services.app.volumes[0].image.subpath (line 8): subpath "../etc" must be a relative path inside the image, without whitespace or ".."`,
    ],
    [
      'an image volume with a relative target',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: image\n        source: alpine\n        target: x\n',
      `${FILE}: services.app.volumes[0].target (line 7): "x" must be an absolute path in the container, without whitespace or ".."`,
    ],
    [
      'image options on a bind',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: bind\n        source: ./x\n        target: /x\n        image: { subpath: etc }\n',
      `${FILE}: services.app.volumes[0].image (line 8): image options are for type: image, and this volume is type: bind`,
    ],
    [
      'a bind mount without source',
      'services:\n  app:\n    image: busybox\n    volumes:\n      - type: bind\n        target: /x\n',
      `${FILE}: services.app.volumes[0] (line 5): source is missing; a bind mount needs the host path`,
    ],
    [
      'a volume that is a number',
      'services:\n  app:\n    image: busybox\n    volumes: [5]\n',
      `${FILE}: services.app.volumes[0] (line 4): expected a map or a string, got a number`,
    ],
    [
      'service_completed_successfully',
      'services:\n  app:\n    image: busybox\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n',
      `${FILE}: services.app.depends_on.migrate.condition (line 6): service_completed_successfully is not supported: services run for the whole job; use service_started or service_healthy`,
    ],
    [
      'a long depends_on without its condition',
      'services:\n  app:\n    image: busybox\n    depends_on:\n      db:\n        restart: true\n',
      `${FILE}: services.app.depends_on.db (line 5): condition is missing`,
    ],
    [
      'a network driver other than bridge',
      'services: {}\nnetworks:\n  backend:\n    driver: overlay\n',
      `${FILE}: networks.backend.driver (line 4): every service of a job shares one network; of the network settings only driver: bridge, ipam subnet and aliases are supported`,
    ],
    [
      'two subnets',
      'services: {}\nnetworks:\n  a:\n    ipam: { config: [{ subnet: 10.1.0.0/24 }] }\n  b:\n    ipam: { config: [{ subnet: 10.2.0.0/24 }] }\n',
      `${FILE}: networks (line 2): only one subnet can be given (10.1.0.0/24, 10.2.0.0/24): every service of a job shares one network; of the network settings only driver: bridge, ipam subnet and aliases are supported`,
    ],
    [
      'a service network option that is not in the specification',
      'services:\n  app:\n    image: busybox\n    networks:\n      backend:\n        ipv4: 10.1.0.9\n',
      `${FILE}: services.app.networks.backend.ipv4 (line 6) is not a known key; valid keys: aliases, interface_name, ipv4_address, ipv6_address, link_local_ips, mac_address, driver_opts, priority, gw_priority`,
    ],
    [
      'an expose entry that is not a TCP port',
      'services:\n  app:\n    image: busybox\n    expose: ["53/udp"]\n',
      `${FILE}: services.app.expose[0] (line 4): "53/udp" is not a TCP port (PORT or PORT/tcp)`,
    ],
    [
      'an env_file that is not there',
      'services:\n  app:\n    image: busybox\n    env_file: ./app.env\n',
      `${FILE}: services.app.env_file (line 4): cannot read /repo/ci/app.env: ENOENT: no such file or directory, open '/repo/ci/app.env'`,
    ],
    [
      'an env_file with a bad line',
      'services:\n  app:\n    image: busybox\n    env_file: [bad.env]\n',
      `${FILE}: services.app.env_file[0] (line 4): bad.env line 2: "NOT VALID" is not KEY=VALUE`,
    ],
    [
      'environment with a bad name',
      'services:\n  app:\n    image: busybox\n    environment:\n      - =x\n',
      `${FILE}: services.app.environment[0] (line 5): "" is not a variable name`,
    ],
    [
      'a required variable that is unset',
      'services:\n  app:\n    image: busybox:${TAG:?set TAG}\n',
      `${FILE}: services.app.image (line 3): variable TAG is required: set TAG`,
    ],
    [
      'a bad mem_limit',
      'services:\n  app:\n    image: busybox\n    mem_limit: 1q\n',
      `${FILE}: services.app.mem_limit (line 4): "1q" is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g`,
    ],
    [
      'a service that is null',
      'services:\n  app:\n',
      `${FILE}: services.app (line 2): expected a map, got null`,
    ],
    [
      'services that are a list',
      'services:\n  - app\n',
      `${FILE}: services (line 1): expected a map, got a list`,
    ],
    [
      'a healthcheck test that is a map',
      'services:\n  app:\n    image: busybox\n    healthcheck:\n      test: { cmd: x }\n',
      `${FILE}: services.app.healthcheck.test (line 5): expected a string or a list, got a map`,
    ],
    ['a top level that is a list', '- services\n', `${FILE}: expected a map, got a list`],
    [
      'environment that is a string',
      'services:\n  app:\n    image: busybox\n    environment: A=1\n',
      `${FILE}: services.app.environment (line 4): expected a map or a list, got a string`,
    ],
    [
      'a merge of something that is not a map',
      'x-a: &a [1]\nservices:\n  app:\n    <<: *a\n    image: busybox\n',
      `${FILE}: services.app.<< (line 4): expected a map or a list of maps to merge, got a list`,
    ],
    [
      'a command that is a number',
      'services:\n  app:\n    image: busybox\n    command: 5\n',
      `${FILE}: services.app.command (line 4): expected a string, a list or null, got a number`,
    ],
  ])('%s', (_what, text, message) => {
    const readFile = files({ '/repo/ci/bad.env': 'OK=1\nNOT VALID\n' });
    expect(specError(() => parseComposeFile(text, FILE, readFile))).toBe(message);
  });
});

test('a named volume must be declared under the top-level volumes:, as Compose requires', () => {
  const text =
    'services:\n  db:\n    image: postgres\n    volumes: ["pgdata:/var/lib/postgresql/data", "./init:/init"]\n';
  expect(specError(() => parse(text))).toBe(
    '/repo/ci/compose.yml: service "db" uses volume "pgdata", which is not declared under the top-level volumes:',
  );
  expect(parse(`${text}volumes:\n  pgdata:\n`)[0]?.volumes).toEqual([
    'pgdata:/var/lib/postgresql/data',
    './init:/init',
  ]);
});

describe('top-level volumes: driver_opts size', () => {
  const GiB = 1024 ** 3;
  const services =
    'services:\n  db:\n    image: postgres\n    volumes: ["pgdata:/var/lib/postgresql/data", "/anon"]\n' +
    '  cache:\n    image: redis\n    volumes: ["cachedata:/data"]\n';

  test('a size goes with the service that uses the volume; other settings are accepted as before', () => {
    const text = `${services}volumes:
  pgdata:
    driver: local
    driver_opts:
      size: 2G
    labels: { team: db }
  cachedata:
    name: shared-cache
  unused:
    driver_opts: { size: 512M }
`;
    const project = parseComposeProject(text, FILE, noFiles);
    expect(project.volumes).toEqual(['pgdata', 'cachedata', 'unused']);
    const [db, cache] = project.services;
    expect(db?.volumeSizes).toEqual({ pgdata: 2 * GiB });
    expect(cache).not.toHaveProperty('volumeSizes');
  });

  test.each([
    ['2GiB', 2 * GiB],
    ['1.5g', 1.5 * GiB],
    ['512m', 512 * 1024 ** 2],
    ['1073741824', GiB],
    ['${PG_SIZE}', 3 * GiB],
  ])('size: %s', (size, bytes) => {
    const text = `${services}volumes:\n  pgdata:\n    driver_opts:\n      size: ${size}\n  cachedata:\n`;
    expect(parse(text, { PG_SIZE: '3G' })[0]?.volumeSizes).toEqual({ pgdata: bytes });
  });

  test('driver_opts given as an empty map sets no size', () => {
    const text = `${services}volumes:\n  pgdata:\n    driver_opts: {}\n  cachedata: {}\n`;
    expect(parse(text)[0]).not.toHaveProperty('volumeSizes');
  });

  test.each([
    [
      'a size that does not parse',
      '    driver_opts:\n      size: abc\n',
      `${FILE}: volumes.pgdata.driver_opts.size (line 11): "abc" is not a size; use a number with a unit, such as 512M or 2G`,
    ],
    [
      'a size below 16 MiB',
      '    driver_opts:\n      size: 8M\n',
      `${FILE}: volumes.pgdata.driver_opts.size (line 11): "8M" is less than 16 MiB, too small for an ext4 volume and its journal; give at least 16M`,
    ],
    [
      'a size that is a map',
      '    driver_opts:\n      size: { value: 2G }\n',
      `${FILE}: volumes.pgdata.driver_opts.size (line 11): expected a string or a number, got a map`,
    ],
    [
      'a driver option other than size',
      '    driver_opts:\n      size: 2G\n      type: nfs\n',
      `${FILE}: volumes.pgdata.driver_opts.type (line 12) is not a known key; valid keys: size`,
    ],
    [
      'driver_opts that are not a map',
      '    driver_opts: size=2G\n',
      `${FILE}: volumes.pgdata.driver_opts (line 10): expected a map, got a string`,
    ],
  ])('%s', (_what, settings, message) => {
    const text = `${services}volumes:\n  pgdata:\n${settings}  cachedata:\n`;
    expect(specError(() => parse(text))).toBe(message);
  });
});

describe('the keys of the Compose Specification beyond the basics', () => {
  const project = (text: string, readFile = noFiles, profiles: string[] = []) =>
    parseComposeProject(text, FILE, readFile, { variables: { PW: 'from-env' }, profiles });

  test('guest settings, labels, hostname, stop settings and restart land in the spec', () => {
    const text = `services:
  app:
    image: busybox
    hostname: app-host
    domainname: example.test
    labels: { team: ci }
    label_file: ./labels
    extra_hosts: ["db.internal:10.1.2.3", "cache.internal=10.1.2.4"]
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    sysctls: ["net.core.somaxconn=1024"]
    ulimits:
      nofile: { soft: 1024, hard: 2048 }
      core: 0
    shm_size: 1g
    read_only: true
    cap_add: [cap_net_admin]
    cap_drop: [NET_RAW]
    restart: on-failure:2
    init: true
    platform: linux/amd64
    deploy:
      resources:
        limits: { cpus: "1.5", memory: 1g }
`;
    const [app] = project(text, files({ '/repo/ci/labels': 'owner=team-a\nteam=overridden\n' })).services;
    expect(app).toMatchObject({
      hostname: 'app-host',
      labels: { owner: 'team-a', team: 'ci' },
      extraHosts: [
        { host: 'db.internal', ip: '10.1.2.3' },
        { host: 'cache.internal', ip: '10.1.2.4' },
      ],
      stopSignal: 'SIGINT',
      stopGraceMs: 90_000,
      memoryMiB: 1024,
      cpus: 2,
      guest: {
        domainname: 'example.test',
        sysctls: { 'net.core.somaxconn': '1024' },
        ulimits: { nofile: { soft: 1024, hard: 2048 }, core: { soft: 0, hard: 0 } },
        shmMiB: 1024,
        readOnly: true,
        capAdd: ['NET_ADMIN'],
        capDrop: ['NET_RAW'],
        restart: { policy: 'on-failure', maxRetries: 2 },
      },
    });
  });

  test('deploy.restart_policy is restart: in Swarm words', () => {
    const text = `services:
  app:
    image: busybox
    deploy:
      restart_policy: { condition: on-failure, max_attempts: 4, delay: 5s }
`;
    expect(project(text).services[0]?.guest?.restart).toEqual({ policy: 'on-failure', maxRetries: 4 });
  });

  test('secrets and configs become files with their targets, owners and modes', () => {
    const text = `services:
  app:
    image: busybox
    secrets:
      - db_password
      - source: token
        target: api-token
        uid: "1000"
        mode: 0400
    configs:
      - app_conf
      - source: inline
        target: /etc/inline.conf
        mode: "640"
secrets:
  db_password: { file: ./pw.txt }
  token: { environment: PW }
configs:
  app_conf: { file: /abs/app.conf }
  inline: { content: "port=\${PORT:-80}" }
`;
    const read = files({ '/repo/ci/pw.txt': 's3cret\n', '/abs/app.conf': 'a=1\n' });
    const [app] = project(text, read).services;
    expect(app?.files?.map((file) => ({ ...file, content: file.content.toString() }))).toEqual([
      { target: '/run/secrets/db_password', content: 's3cret\n', uid: 0, gid: 0, mode: 0o444 },
      { target: '/run/secrets/api-token', content: 'from-env', uid: 1000, gid: 0, mode: 0o400 },
      { target: '/app_conf', content: 'a=1\n', uid: 0, gid: 0, mode: 0o444 },
      { target: '/etc/inline.conf', content: 'port=80', uid: 0, gid: 0, mode: 0o640 },
    ]);
  });

  test('each ignored key is one warning line with where it is and why; empty ones say nothing', () => {
    const text = `version: "3.9"
services:
  app:
    image: busybox
    logging: { driver: syslog }
    tty: false
    ports:
      - target: 80
        mode: ingress
`;
    expect(project(text).warnings).toEqual([
      `${FILE}: version (line 1): ignored: it is obsolete in the Compose Specification`,
      `${FILE}: services.app.logging (line 5): ignored: a service's output is always kept, and shown by hyper logs and in the job summary`,
      `${FILE}: services.app.ports[0].mode (line 9): ignored: hyper-services runs one job on one host; there is no orchestrator to hand this to`,
    ]);
  });

  test('profiles: a service runs only with one of its profiles enabled; * enables all', () => {
    const text = `services:
  app:
    image: busybox
    depends_on:
      debug: { condition: service_started, required: false }
  debug:
    image: busybox
    profiles: [debug, tools]
`;
    expect(project(text).services.map((s) => s.name)).toEqual(['app']);
    expect(project(text).services[0]?.dependsOn).toEqual([]);
    expect(project(text, noFiles, ['tools']).services.map((s) => s.name)).toEqual(['app', 'debug']);
    expect(project(text, noFiles, ['*']).services[0]?.dependsOn).toEqual([
      { service: 'debug', condition: 'service_started' },
    ]);
  });

  test('harmless values of refused keys are accepted; replicas: 1 is one VM', () => {
    const text = `services:
  app:
    image: busybox
    ipc: private
    network_mode: bridge
    deploy: { replicas: 1 }
`;
    expect(project(text).services).toHaveLength(1);
  });

  test.each([
    [
      'network_mode: host',
      'services:\n  app:\n    image: busybox\n    network_mode: host\n',
      `${FILE}: services.app.network_mode (line 4): host or another service's network would reach past the VM boundary; every service is on the job network`,
    ],
    [
      'devices',
      'services:\n  app:\n    image: busybox\n    devices: ["/dev/sda:/dev/sda"]\n',
      `${FILE}: services.app.devices (line 4): host devices are not passed into service VMs: that would break the VM boundary`,
    ],
    [
      'replicas: 0',
      'services:\n  app:\n    image: busybox\n    deploy: { replicas: 0 }\n',
      `${FILE}: services.app.deploy.replicas (line 4): "0" is not a number of replicas: give a whole number of at least 1`,
    ],
    [
      'a negative replica count',
      'services:\n  app:\n    image: busybox\n    deploy:\n      replicas: -2\n',
      `${FILE}: services.app.deploy.replicas (line 5): "-2" is not a number of replicas: give a whole number of at least 1`,
    ],
    [
      'a missing secret file',
      'services:\n  app:\n    image: busybox\n    secrets: [pw]\nsecrets:\n  pw: { file: ./nope.txt }\n',
      `${FILE}: secrets.pw.file (line 6): cannot read /repo/ci/nope.txt: ENOENT: no such file or directory, open '/repo/ci/nope.txt'`,
    ],
    [
      'an undeclared secret',
      'services:\n  app:\n    image: busybox\n    secrets: [pw]\n',
      `${FILE}: services.app.secrets[0] (line 4): secret "pw" is not declared under the top-level secrets:`,
    ],
    [
      'a dependency only in a disabled profile',
      'services:\n  app:\n    image: busybox\n    depends_on: [debug]\n  debug:\n    image: busybox\n    profiles: [debug]\n',
      `${FILE}: service "app" depends on "debug", which is only in profile "debug"; enable it with --profile debug (or set required: false)`,
    ],
    [
      'an unknown capability',
      'services:\n  app:\n    image: busybox\n    cap_add: [FLY]\n',
      `${FILE}: services.app.cap_add[0] (line 4): "FLY" is not a capability; use one of`,
    ],
    [
      'a restart policy that is not one',
      'services:\n  app:\n    image: busybox\n    restart: sometimes\n',
      `${FILE}: services.app.restart (line 4): "sometimes" is not a restart policy: use no, always, on-failure[:N] or unless-stopped`,
    ],
    [
      'a ulimit that is not one',
      'services:\n  app:\n    image: busybox\n    ulimits: { files: 10 }\n',
      `${FILE}: services.app.ulimits.files (line 4): "files" is not a ulimit; use one of core, cpu`,
    ],
    [
      'a soft limit above the hard one',
      'services:\n  app:\n    image: busybox\n    ulimits:\n      nofile: { soft: 10, hard: 5 }\n',
      `${FILE}: services.app.ulimits.nofile (line 5): the soft limit 10 is above the hard limit 5`,
    ],
    [
      'another platform',
      'services:\n  app:\n    image: busybox\n    platform: linux/arm64\n',
      `${FILE}: services.app.platform (line 4): "linux/arm64" cannot run here: service VMs are linux/amd64`,
    ],
    [
      'mem_limit and a deploy limit that differ',
      'services:\n  app:\n    image: busybox\n    mem_limit: 512m\n    deploy:\n      resources:\n        limits: { memory: 1g }\n',
      `${FILE}: services.app.deploy.resources.limits.memory (line 7): deploy.resources.limits.memory differs from mem_limit; give one of them`,
    ],
  ])('%s is refused with its reason', (_what, text, message) => {
    expect(specError(() => project(text))).toContain(message);
  });
});

describe('extends and include', () => {
  const project = (text: string, readFile = noFiles) =>
    parseComposeProject(text, FILE, readFile, { variables: {} });

  test('extends merges as Compose does: maps by key, lists together, this service winning', () => {
    const read = files({
      '/repo/ci/shared/common.yml': `services:
  base:
    image: busybox
    environment: { TZ: utc, PORT: "80" }
    ports: ["8080:80"]
    volumes: ["./data:/data", "cache:/cache", "./logs:/logs"]
    labels: { tier: base }
    command: ["httpd", "-f"]
`,
    });
    const text = `services:
  web:
    extends: { file: shared/common.yml, service: base }
    environment: { PORT: "8080" }
    volumes: ["./other:/data"]
    labels: { team: ci }
  cli:
    extends: web
    command: ["sh"]
volumes:
  cache:
`;
    const [web, cli] = project(text, read).services;
    expect(web).toMatchObject({
      image: 'busybox',
      env: ['TZ=utc', 'PORT=80', 'PORT=8080'],
      volumes: ['cache:/cache', '/repo/ci/shared/logs:/logs', './other:/data'],
      labels: { tier: 'base', team: 'ci' },
      command: ['httpd', '-f'],
    });
    expect(web?.ports).toHaveLength(1);
    expect(cli).toMatchObject({ name: 'cli', image: 'busybox', command: ['sh'], labels: { team: 'ci' } });
  });

  test('an extends cycle, and a base that is not there, are errors that say so', () => {
    expect(
      specError(() => project('services:\n  a:\n    extends: b\n  b:\n    extends: a\n    image: busybox\n')),
    ).toBe(`${FILE}: services.b.extends (line 5): extends makes a cycle: a -> b -> a`);
    expect(specError(() => project('services:\n  a:\n    extends: nope\n'))).toBe(
      `${FILE}: services.a.extends (line 3): service "nope" is not defined in ${FILE}`,
    );
  });

  test("include brings in another project's services, resolved in its own directory, with its .env as defaults", () => {
    const read = files({
      '/repo/ci/db/compose.yml':
        'services:\n  db:\n    image: postgres:${PG:-15}\n    env_file: db.env\nvolumes:\n  pgdata:\n',
      '/repo/ci/db/db.env': 'POSTGRES_PASSWORD=pw\n',
      '/repo/ci/db/.env': 'PG=16\n',
    });
    const text =
      'include:\n  - db/compose.yml\nservices:\n  app:\n    image: busybox\n    depends_on: [db]\n';
    const result = project(text, read);
    expect(result.services.map((s) => [s.name, s.image, s.baseDir])).toEqual([
      ['db', 'postgres:16', '/repo/ci/db'],
      ['app', 'busybox', '/repo/ci'],
    ]);
    expect(result.services[0]?.env).toEqual(['POSTGRES_PASSWORD=pw']);
    expect(result.volumes).toEqual(['pgdata']);
  });

  test('an include outside the project directory, an include cycle and a service defined twice are errors', () => {
    expect(specError(() => project('include: [../other/compose.yml]\nservices: {}\n'))).toBe(
      `${FILE}: include[0] (line 1): /repo/other/compose.yml is outside the project directory /repo/ci; include files from under it`,
    );
    const cycle = files({
      '/repo/ci/a.yml': 'include: [b.yml]\nservices: {}\n',
      '/repo/ci/b.yml': 'include: [a.yml]\nservices: {}\n',
    });
    expect(specError(() => project('include: [a.yml]\nservices: {}\n', cycle))).toBe(
      '/repo/ci/b.yml: include[0] (line 1): include makes a cycle: compose.yml -> a.yml -> b.yml -> a.yml',
    );
    const twice = files({ '/repo/ci/x.yml': 'services:\n  app:\n    image: busybox\n' });
    expect(specError(() => project('include: [x.yml]\nservices:\n  app:\n    image: busybox\n', twice))).toBe(
      `${FILE}: service "app" is also defined by an included file; a name belongs to one service`,
    );
  });
});

test("a file shaped like the voting sample app's prebuilt-images compose file plans without a warning", () => {
  // Written here in the shape of dockersamples/example-voting-app's docker-compose.images.yml:
  // services on two networks, healthchecks from a bound directory, depends_on with conditions.
  const text = `services:
  vote:
    image: dockersamples/examplevotingapp_vote
    depends_on:
      redis:
        condition: service_healthy
    ports: ["8080:80"]
    networks: [front-tier, back-tier]
  result:
    image: dockersamples/examplevotingapp_result
    depends_on:
      db:
        condition: service_healthy
    ports: ["8081:80"]
    networks: [front-tier, back-tier]
  worker:
    image: dockersamples/examplevotingapp_worker
    depends_on:
      redis: { condition: service_healthy }
      db: { condition: service_healthy }
    networks: [back-tier]
  redis:
    image: redis:alpine
    volumes: ["./healthchecks:/healthchecks"]
    healthcheck:
      test: /healthchecks/redis.sh
      interval: "5s"
    networks: [back-tier]
  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: "postgres"
      POSTGRES_PASSWORD: "postgres"
    volumes:
      - "db-data:/var/lib/postgresql/data"
      - "./healthchecks:/healthchecks"
    healthcheck:
      test: /healthchecks/postgres.sh
      interval: "5s"
    networks: [back-tier]
volumes:
  db-data:
networks:
  front-tier:
  back-tier:
`;
  const result = parseComposeProject(text, FILE, noFiles);
  expect(result.warnings).toEqual([]);
  expect(result.services.map((s) => s.name)).toEqual(['vote', 'result', 'worker', 'redis', 'db']);
  expect(result.services[3]?.healthcheck).toMatchObject({
    test: ['CMD-SHELL', '/healthchecks/redis.sh'],
    intervalMs: 5000,
  });
});

test('external: false asks for nothing and is accepted; external: true is refused with its reason', () => {
  const text = (external: string) =>
    `services:\n  app:\n    image: busybox\nvolumes:\n  data:\n    external: ${external}\n`;
  expect(parseComposeProject(text('false'), FILE, noFiles).volumes).toEqual(['data']);
  expect(specError(() => parseComposeProject(text('true'), FILE, noFiles))).toBe(
    `${FILE}: volumes.data.external (line 6): a volume is a disk of the job; an external one is not there to use`,
  );
});
