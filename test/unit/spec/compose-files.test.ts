import { parseComposeFiles, parseComposeProject } from '../../../src/spec/compose.js';
import { loadProject } from '../../../src/spec/project.js';
import { memoryFiles } from './memory-files.js';
import { specError } from './spec-error.js';

const BASE = '/repo/ci/compose.yml';
const OVERRIDE = '/repo/ci/compose.override.yml';

const files = memoryFiles;
const noFiles = files({});
const merge = (base: string, override: string, readFile = noFiles, profiles: string[] = []) =>
  parseComposeFiles(
    [
      { text: base, file: BASE },
      { text: override, file: OVERRIDE },
    ],
    readFile,
    { variables: {}, profiles },
  );

describe('parseComposeFiles: several files merged in order', () => {
  test('an override changes environment, ports and command, and adds a service after the others', () => {
    const base = `services:
  web:
    image: nginx:1.27
    environment: { MODE: dev, TZ: utc }
    ports: ["8080:80"]
    command: ["nginx", "-g", "daemon off;"]
  db:
    image: postgres:16
`;
    const override = `services:
  web:
    environment: { MODE: ci }
    ports: ["9090:80"]
    command: ["nginx-debug", "-g", "daemon off;"]
  cache:
    image: redis:7
`;
    const project = merge(base, override);
    expect(project.services.map((s) => s.name)).toEqual(['web', 'db', 'cache']);
    const [web, db, cache] = project.services;
    expect(web).toMatchObject({
      image: 'nginx:1.27',
      env: ['MODE=dev', 'TZ=utc', 'MODE=ci'],
      command: ['nginx-debug', '-g', 'daemon off;'],
    });
    expect(web?.ports.map((p) => [p.hostPort, p.containerPort])).toEqual([
      [8080, 80],
      [9090, 80],
    ]);
    expect(db).toMatchObject({ name: 'db', image: 'postgres:16', env: [] });
    expect(cache).toMatchObject({ name: 'cache', image: 'redis:7', baseDir: '/repo/ci' });
    expect(project.warnings).toEqual([]);
  });

  test('a service in the override may leave out image: it keeps the one an earlier file gives', () => {
    const project = merge(
      'services:\n  app:\n    image: busybox:1.36\n    command: ["sleep", "1"]\n',
      'services:\n  app:\n    labels: { ci: "true" }\n',
    );
    expect(project.services).toEqual([
      expect.objectContaining({
        name: 'app',
        image: 'busybox:1.36',
        command: ['sleep', '1'],
        labels: { ci: 'true' },
      }),
    ]);
  });

  test('the image may come from the later file alone, and the later image wins over the earlier', () => {
    const project = merge(
      'services:\n  app:\n    command: ["true"]\n  db:\n    image: postgres:15\n',
      'services:\n  app:\n    image: busybox\n  db:\n    image: postgres:16\n',
    );
    expect(project.services.map((s) => [s.name, s.image])).toEqual([
      ['app', 'busybox'],
      ['db', 'postgres:16'],
    ]);
  });

  test('a service that has no image in any file is an error that names the files it is in', () => {
    expect(
      specError(() =>
        merge(
          'services:\n  web:\n    command: ["true"]\n  db:\n    image: postgres:16\n',
          'services:\n  web:\n    environment: { A: "1" }\n',
        ),
      ),
    ).toBe(`service "web" has no image in ${BASE} or ${OVERRIDE}; add image: NAME[:TAG]`);
    expect(
      specError(() =>
        merge('services:\n  db:\n    image: postgres:16\n', 'services:\n  tool:\n    command: ["true"]\n'),
      ),
    ).toBe(`service "tool" has no image in ${OVERRIDE}; add image: NAME[:TAG]`);
  });

  test('one file keeps its own message for a service without image', () => {
    expect(
      specError(() =>
        parseComposeFiles([{ text: 'services:\n  web:\n    command: ["true"]\n', file: BASE }], noFiles),
      ),
    ).toBe(`${BASE}: services.web (line 2): service "web" has no image; add image: NAME[:TAG]`);
  });

  test('a service without image in a profile left disabled is no error; enabled, it is', () => {
    const base = 'services:\n  app:\n    image: busybox\n';
    const override = 'services:\n  debug:\n    profiles: [debug]\n    command: ["sh"]\n';
    expect(merge(base, override).services.map((s) => s.name)).toEqual(['app']);
    expect(specError(() => merge(base, override, noFiles, ['debug']))).toBe(
      `service "debug" has no image in ${OVERRIDE}; add image: NAME[:TAG]`,
    );
  });

  test("relative paths in a later file in another directory resolve from the first file's directory", () => {
    const read = files({
      '/repo/ci/app.env': 'FROM=project-dir\n',
      '/repo/ci/overrides/app.env': 'FROM=override-dir\n',
    });
    const project = parseComposeFiles(
      [
        { text: 'services:\n  app:\n    image: busybox\n    volumes: ["./conf:/conf"]\n', file: BASE },
        {
          text: 'services:\n  app:\n    env_file: app.env\n    volumes: ["./data:/data"]\n',
          file: '/repo/ci/overrides/ci.yml',
        },
      ],
      read,
    );
    expect(project.services).toEqual([
      expect.objectContaining({
        baseDir: '/repo/ci',
        volumes: ['./conf:/conf', './data:/data'],
        env: ['FROM=project-dir'],
      }),
    ]);
  });

  test('top-level volumes are put together, a size the later file sets wins, and the later subnet wins', () => {
    const base = `services:
  db:
    image: postgres:16
    volumes: ["pgdata:/var/lib/postgresql/data"]
volumes:
  pgdata:
    driver_opts: { size: 2G }
  logs:
    driver_opts: { size: 1G }
networks:
  default:
    ipam: { config: [{ subnet: 10.20.0.0/24 }] }
`;
    const override = `services:
  app:
    image: busybox
    volumes: ["logs:/logs", "cache:/cache"]
volumes:
  pgdata:
    driver_opts: { size: 4G }
  logs:
  cache:
networks:
  default:
    ipam: { config: [{ subnet: 10.30.0.0/24 }] }
`;
    const project = merge(base, override);
    expect(project.volumes).toEqual(['pgdata', 'logs', 'cache']);
    expect(project.subnet).toBe('10.30.0.0/24');
    expect(project.services.map((s) => [s.name, s.volumeSizes])).toEqual([
      ['db', { pgdata: 4 * 1024 ** 3 }],
      ['app', { logs: 1024 ** 3 }],
    ]);
  });

  test('a named volume that no file declares is an error naming the files the service is in', () => {
    expect(
      specError(() =>
        merge(
          'services:\n  db:\n    image: postgres:16\n',
          'services:\n  db:\n    volumes: ["pgdata:/data"]\n',
        ),
      ),
    ).toBe(
      `${BASE}, ${OVERRIDE}: service "db" uses volume "pgdata", which is not declared under the top-level volumes:`,
    );
  });

  test('an error in the second file names that file and its line', () => {
    const base = 'services:\n  app:\n    image: busybox\n';
    expect(specError(() => merge(base, 'services:\n  app:\n    ports: ["54x2"]\n'))).toBe(
      `${OVERRIDE}: services.app.ports[0] (line 3): "54x2" is not a port mapping: "54x2" is not a port; use "HOST:CONTAINER", "CONTAINER" or "IP:HOST:CONTAINER", optionally with "/tcp" or "/udp"`,
    );
    expect(specError(() => merge(base, 'services:\n  app:\n    restrat: always\n'))).toBe(
      `${OVERRIDE}: services.app.restrat (line 3) is not a known key; did you mean restart?`,
    );
    expect(specError(() => merge(base, 'services:\n  app:\n    env_file: missing.env\n'))).toBe(
      `${OVERRIDE}: services.app.env_file (line 3): cannot read /repo/ci/missing.env: ENOENT: no such file or directory, open '/repo/ci/missing.env'`,
    );
  });

  test('one file given as a list is the same project parseComposeProject makes', () => {
    const text =
      'services:\n  app:\n    image: busybox\n    volumes: ["data:/data"]\n    depends_on: [db]\n  db:\n    image: postgres:16\nvolumes:\n  data:\n';
    expect(parseComposeFiles([{ text, file: BASE }], noFiles)).toEqual(
      parseComposeProject(text, BASE, noFiles),
    );
  });
});

describe('include with a path: list of several files', () => {
  const top = (include: string) =>
    `include:\n${include}services:\n  app:\n    image: busybox\n    depends_on: [db]\n`;

  test('merges the files in order, their paths relative to the first one', () => {
    const read = files({
      '/repo/ci/db/compose.yml':
        'services:\n  db:\n    image: postgres:${PG:-15}\n    env_file: db.env\nvolumes:\n  pgdata:\n',
      '/repo/ci/db/ci/override.yml':
        'services:\n  db:\n    environment: { POSTGRES_DB: ci }\n    volumes: ["pgdata:/var/lib/postgresql/data", "./init:/init"]\n',
      '/repo/ci/db/db.env': 'POSTGRES_PASSWORD=pw\n',
      '/repo/ci/db/.env': 'PG=16\n',
    });
    const project = parseComposeProject(top('  - path: [db/compose.yml, db/ci/override.yml]\n'), BASE, read, {
      variables: {},
    });
    expect(project.services.map((s) => s.name)).toEqual(['db', 'app']);
    expect(project.services[0]).toMatchObject({
      image: 'postgres:16',
      env: ['POSTGRES_PASSWORD=pw', 'POSTGRES_DB=ci'],
      volumes: ['pgdata:/var/lib/postgresql/data', './init:/init'],
      baseDir: '/repo/ci/db',
    });
    expect(project.volumes).toEqual(['pgdata']);
  });

  test('project_directory is where the files resolve from and where the .env is', () => {
    const read = files({
      '/repo/ci/db/compose.yml': 'services:\n  db:\n    image: postgres:${PG:-15}\n    env_file: db.env\n',
      '/repo/ci/db/more.yml': 'services:\n  db:\n    volumes: ["./data:/data"]\n',
      '/repo/ci/shared/db.env': 'FROM=shared\n',
      '/repo/ci/shared/.env': 'PG=17\n',
    });
    const project = parseComposeProject(
      top('  - path: [db/compose.yml, db/more.yml]\n    project_directory: shared\n'),
      BASE,
      read,
      { variables: {} },
    );
    expect(project.services[0]).toMatchObject({
      image: 'postgres:17',
      env: ['FROM=shared'],
      baseDir: '/repo/ci/shared',
    });
  });

  test('each file of the list must be under the project directory, readable, and not make a cycle', () => {
    const read = files({ '/repo/ci/db/compose.yml': 'services:\n  db:\n    image: postgres:16\n' });
    expect(
      specError(() =>
        parseComposeProject(top('  - path: [db/compose.yml, ../other.yml]\n'), BASE, read, { variables: {} }),
      ),
    ).toBe(
      `${BASE}: include[0].path[1] (line 2): /repo/other.yml is outside the project directory /repo/ci; include files from under it`,
    );
    expect(
      specError(() =>
        parseComposeProject(top('  - path: [db/compose.yml, db/missing.yml]\n'), BASE, read, {
          variables: {},
        }),
      ),
    ).toBe(
      `${BASE}: include[0].path[1] (line 2): cannot read /repo/ci/db/missing.yml: ENOENT: no such file or directory, open '/repo/ci/db/missing.yml'`,
    );
    const cycle = files({
      '/repo/ci/db/compose.yml': 'services:\n  db:\n    image: postgres:16\n',
      '/repo/ci/db/more.yml': 'include: [../compose.yml]\nservices: {}\n',
    });
    expect(
      specError(() =>
        parseComposeProject(top('  - path: [db/compose.yml, db/more.yml]\n'), BASE, cycle, { variables: {} }),
      ),
    ).toBe(
      '/repo/ci/db/more.yml: include[0] (line 1): include makes a cycle: compose.yml -> db/more.yml -> compose.yml',
    );
  });
});

describe('loadProject', () => {
  test('merges several compose files', () => {
    const project = loadProject(
      [
        { text: 'services:\n  app:\n    image: busybox\n', file: BASE },
        { text: 'services:\n  app:\n    environment:\n      - A=${A}\n', file: OVERRIDE },
      ],
      noFiles,
      { A: 'from-env', COMPOSE_PROFILES: undefined },
    );
    expect(project).toEqual({
      services: [expect.objectContaining({ name: 'app', image: 'busybox', env: ['A=from-env'] })],
      subnet: undefined,
      warnings: [],
    });
  });
});
