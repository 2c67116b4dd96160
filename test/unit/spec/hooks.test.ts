import { hookArgv } from '../../../src/engine/hooks.js';
import { parseComposeFile } from '../../../src/spec/compose.js';

const FILE = '/repo/ci/compose.yml';
const parse = (text: string, variables = {}) => parseComposeFile(text, FILE, () => '', variables);

describe('post_start, pre_stop and group_add in a compose file', () => {
  test('hooks keep their command, user, directory, environment and privilege; groups their names', () => {
    const [db] = parse(
      `services:
  db:
    image: postgres
    group_add: [audio, 4242]
    pids_limit: 300
    post_start:
      - command: ./seed.sh --fast
        user: postgres
        working_dir: /docker-entrypoint-initdb.d
        environment:
          SEED: \${SEED:-small}
      - command: [chown, -R, "999", /data]
        privileged: true
    pre_stop:
      - command: pg_ctl stop -m fast
`,
      { SEED: 'large' },
    );
    expect(db?.guest?.groupAdd).toEqual(['audio', '4242']);
    expect(db?.guest?.pidsLimit).toBe(300);
    expect(db?.postStart).toEqual([
      {
        command: ['./seed.sh', '--fast'],
        user: 'postgres',
        workdir: '/docker-entrypoint-initdb.d',
        env: ['SEED=large'],
      },
      { command: ['chown', '-R', '999', '/data'], privileged: true },
    ]);
    expect(db?.preStop).toEqual([{ command: ['pg_ctl', 'stop', '-m', 'fast'] }]);
  });
  test('extends puts the base hooks first and joins the groups', () => {
    const services = parse(`services:
  base:
    image: busybox
    group_add: [audio]
    post_start: [{ command: echo base }]
  app:
    extends: base
    group_add: [video, audio]
    post_start: [{ command: echo app }]
`);
    const app = services.find((s) => s.name === 'app');
    expect(app?.postStart?.map((h) => h.command)).toEqual([
      ['echo', 'base'],
      ['echo', 'app'],
    ]);
    expect(app?.guest?.groupAdd).toEqual(['audio', 'video']);
  });
  test('deploy.resources.limits.pids is the pids limit too; -1 is none; the two must agree', () => {
    const limited = parse(
      'services:\n  app:\n    image: busybox\n    deploy: { resources: { limits: { pids: 50 } } }\n',
    );
    expect(limited[0]?.guest?.pidsLimit).toBe(50);
    expect(parse('services:\n  app:\n    image: busybox\n    pids_limit: -1\n')[0]?.guest).toBeUndefined();
    expect(() =>
      parse(
        'services:\n  app:\n    image: busybox\n    pids_limit: 10\n    deploy: { resources: { limits: { pids: 50 } } }\n',
      ),
    ).toThrow('deploy.resources.limits.pids differs from pids_limit; give one of them');
  });
  test.each([
    [
      'a hook without a command',
      'services:\n  app:\n    image: busybox\n    post_start:\n      - user: root\n',
      `${FILE}: services.app.post_start[0] (line 5): command is missing`,
    ],
    [
      'a group that is no name',
      'services:\n  app:\n    image: busybox\n    group_add: ["wheel users"]\n',
      `${FILE}: services.app.group_add[0] (line 4): "wheel users" is not a group name or number`,
    ],
  ])('%s is refused', (_what, text, message) => expect(() => parse(text)).toThrow(message));
});

describe('hookArgv', () => {
  const record = { user: 'app', workdir: '/srv' };
  test("a hook runs as an exec in the container, with the service's user and directory unless it gives its own", () => {
    const argv = hookArgv(record, { command: ['./seed.sh'], env: ['SEED=1'] });
    expect(argv.slice(0, 7)).toEqual([
      '/bin/hyper-exec',
      '--root',
      '/container',
      '--user',
      'app',
      '--workdir',
      '/srv',
    ]);
    expect(argv).toContain('--caps-file');
    expect(argv.slice(-4)).toEqual(['--env', 'SEED=1', '--', './seed.sh']);
    expect(hookArgv(record, { command: ['id'], user: 'root', workdir: '/' }).slice(3, 7)).toEqual([
      '--user',
      'root',
      '--workdir',
      '/',
    ]);
  });
  test('a privileged hook keeps every capability: no caps file', () => {
    const argv = hookArgv(record, { command: ['id'], privileged: true });
    expect(argv).not.toContain('--caps-file');
    expect(argv).not.toContain('/run/hyper/caps');
    expect(argv).toContain('--groups-file');
  });
});
