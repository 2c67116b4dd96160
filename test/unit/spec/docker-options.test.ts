import { parseDockerOptions } from '../../../src/spec/docker-options.js';

describe('parseDockerOptions', () => {
  test.each([
    [
      '--health-cmd "pg_isready -U postgres" --health-interval 10s',
      {
        env: [],
        tmpfs: [],
        aliases: [],
        expose: [],
        healthcheck: {
          test: ['CMD-SHELL', 'pg_isready -U postgres'],
          intervalMs: 10_000,
          timeoutMs: 30_000,
          startPeriodMs: 0,
          retries: 3,
        },
      },
    ],
    [
      "--health-cmd='redis-cli ping | grep PONG' --health-retries=0",
      {
        env: [],
        tmpfs: [],
        aliases: [],
        expose: [],
        healthcheck: {
          test: ['CMD-SHELL', 'redis-cli ping | grep PONG'],
          intervalMs: 30_000,
          timeoutMs: 30_000,
          startPeriodMs: 0,
          retries: 3,
        },
      },
    ],
    [
      '-e "GREETING=hello world" --env=A=1=2 -e=B=3 -eC=4',
      { env: ['GREETING=hello world', 'A=1=2', 'B=3', 'C=4'], tmpfs: [], aliases: [], expose: [] },
    ],
    [
      '--entrypoint "/usr/bin/env" --name db',
      { env: [], tmpfs: [], aliases: [], expose: [], entrypoint: ['/usr/bin/env'], name: 'db' },
    ],
    [
      '-m1g --cpus=0.5 -u 1000:1000 -w /work',
      {
        env: [],
        tmpfs: [],
        aliases: [],
        expose: [],
        memoryMiB: 1024,
        cpus: 1,
        user: '1000:1000',
        workdir: '/work',
      },
    ],
    [
      '--tmpfs /run --tmpfs /tmp:size=64m',
      { env: [], tmpfs: ['/run', '/tmp:size=64m'], aliases: [], expose: [] },
    ],
    ['', { env: [], tmpfs: [], aliases: [], expose: [] }],
  ])('%s', (text, expected) => {
    expect(parseDockerOptions(text)).toEqual(expected);
  });
});
