import { imageRunConfig } from '../../../src/images/run-config.js';
import type { ImageConfig } from '../../../src/types/oci/index.js';

const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } };

test('every run setting of an image config, as the service spec needs it', () => {
  const config: ImageConfig = {
    ...base,
    config: {
      Entrypoint: ['docker-entrypoint.sh'],
      Cmd: ['postgres'],
      Env: ['PGDATA=/var/lib/postgresql/data'],
      WorkingDir: '/srv',
      User: 'postgres',
      ExposedPorts: { '5432/tcp': {} },
      Volumes: { '/var/lib/postgresql/data': {} },
      StopSignal: 'SIGINT',
      Healthcheck: {
        Test: ['CMD-SHELL', 'pg_isready'],
        Interval: 5e9,
        Timeout: 2e9,
        StartPeriod: 1e10,
        Retries: 5,
      },
    },
  };
  expect(imageRunConfig(config)).toEqual({
    entrypoint: ['docker-entrypoint.sh'],
    cmd: ['postgres'],
    env: ['PGDATA=/var/lib/postgresql/data'],
    workingDir: '/srv',
    user: 'postgres',
    stopSignal: 'SIGINT',
    exposedPorts: ['5432/tcp'],
    volumes: ['/var/lib/postgresql/data'],
    healthcheck: {
      test: ['CMD-SHELL', 'pg_isready'],
      intervalMs: 5000,
      timeoutMs: 2000,
      startPeriodMs: 10000,
      retries: 5,
    },
  });
});

test("Docker's defaults where the config is silent", () => {
  expect(imageRunConfig(base)).toEqual({
    entrypoint: [],
    cmd: [],
    env: [],
    workingDir: '/',
    user: '',
    stopSignal: 'SIGTERM',
    exposedPorts: [],
    volumes: [],
    healthcheck: undefined,
  });
  const unset = imageRunConfig({ ...base, config: { Healthcheck: { Test: ['CMD', 'true'] } } });
  expect(unset.healthcheck).toEqual({
    test: ['CMD', 'true'],
    intervalMs: 30000,
    timeoutMs: 30000,
    startPeriodMs: 0,
    retries: 3,
  });
  expect(
    imageRunConfig({ ...base, config: { Healthcheck: { Test: ['NONE'] } } }).healthcheck,
  ).toBeUndefined();
});
