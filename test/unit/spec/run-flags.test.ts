import { CONTAINER_DEFAULTS, SpecError, validateName } from '../../../src/spec/container.js';
import { validateContainer, validatePlan } from '../../../src/spec/plan.js';
import { containerFromRunFlags, exposedPort, type RunFlags } from '../../../src/spec/run-flags.js';

const flags: RunFlags = {
  image: 'redis:7',
  command: [],
  publish: [],
  env: [],
  volumes: [],
  tmpfs: [],
  aliases: [],
  expose: [],
  baseDir: '/work',
};

describe('containerFromRunFlags: hyper run flags to a ContainerSpec', () => {
  test('only what was given; the defaults are left to one place', () => {
    const spec = containerFromRunFlags({ ...flags, name: 'cache' }, {});
    expect(spec).toEqual({
      name: 'cache',
      image: 'redis:7',
      env: [],
      ports: [],
      volumes: [],
      tmpfs: [],
      baseDir: '/work',
      command: [],
      dependsOn: [],
      aliases: [],
      expose: [],
    });
    expect(CONTAINER_DEFAULTS).toEqual({ memoryMiB: 512, cpus: 1 });
  });

  test('every flag lands where up would put the same key', () => {
    const spec = containerFromRunFlags(
      {
        ...flags,
        name: 'db',
        command: ['postgres', '-c', 'fsync=off'],
        publish: ['5432'],
        env: ['A=1', 'FROM_ENV', 'MISSING'],
        memoryMiB: 1024,
        cpus: 2,
        entrypoint: '/bin/sh',
        user: 'postgres',
        workdir: '/data',
        volumes: ['pgdata:/var/lib/postgresql/data'],
        tmpfs: ['/run'],
        aliases: ['database'],
        expose: ['8080/tcp'],
      },
      { FROM_ENV: 'x' },
    );
    expect(spec).toMatchObject({
      env: ['A=1', 'FROM_ENV=x', 'MISSING='],
      ports: [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 5432, protocol: 'tcp' }],
      memoryMiB: 1024,
      cpus: 2,
      entrypoint: ['/bin/sh'],
      user: 'postgres',
      workdir: '/data',
      aliases: ['database'],
      expose: [8080],
    });
    expect(validatePlan([spec])).toEqual([[spec]]);
  });

  test('no --name: a generated one from the image', () => {
    expect(containerFromRunFlags({ ...flags, image: 'oci:/x/busybox-httpd:latest' }, {}).name).toMatch(
      /^busybox-httpd-[0-9a-f]{4}$/,
    );
  });

  test.each([
    ['abc', '--expose abc: give a TCP port number from 1 to 65535 (PORT or PORT/tcp)'],
    ['70000', '--expose 70000: give a TCP port number from 1 to 65535 (PORT or PORT/tcp)'],
    ['53/udp', '--expose 53/udp: give a TCP port number from 1 to 65535 (PORT or PORT/tcp)'],
  ])('--expose %s is refused', (text, message) => {
    expect(() => exposedPort(text)).toThrow(new SpecError(message));
  });

  test('hyper run is validated like up: a bad mount is refused before anything starts', () => {
    const spec = containerFromRunFlags({ ...flags, name: 'x', volumes: ['data:relative'] }, {});
    expect(() => validateContainer(spec)).toThrow(
      expect.objectContaining({
        name: 'SpecError',
        kind: 'Invalid',
        message: 'volume "data:relative": the path in the container must be absolute, not "relative"',
      }),
    );
  });

  test('a bad name is Invalid', () => {
    expect(() => validateName('-x')).toThrow(
      expect.objectContaining({
        kind: 'Invalid',
        message: expect.stringContaining('"-x" is not a valid name'),
      }),
    );
  });
});
