import { parseComposeFile } from '../../../src/spec/compose.js';
import { preStartSpecs, replicaPreStartSpecs, replicaSpecs, validatePlan } from '../../../src/spec/plan.js';

const FILE = '/repo/ci/compose.yml';
const parse = (text: string, variables = {}) => parseComposeFile(text, FILE, () => '', variables);

describe('pre_start steps (init containers)', () => {
  const app = `services:
  app:
    image: registry.test/app:1
    entrypoint: [/entrypoint.sh]
    command: [serve]
    user: app
    working_dir: /srv
    environment: { MODE: prod, LEVEL: info }
    volumes: [data:/data, /cache]
    tmpfs: /scratch
    mem_limit: 256m
    extra_hosts: { ledger: 10.9.0.9 }
    pre_start:
      - command: [migrate, --up]
        environment:
          LEVEL: \${LEVEL:-debug}
      - image: busybox
        command: chown -R 999 /data
        privileged: true
        user: root
      - image: busybox
        working_dir: /data
volumes:
  data:
`;

  test('a compose file keeps each step as written', () => {
    const [spec] = parse(app, { LEVEL: 'trace' });
    expect(spec?.preStart).toEqual([
      { command: ['migrate', '--up'], env: ['LEVEL=trace'] },
      { image: 'busybox', command: ['chown', '-R', '999', '/data'], privileged: true, user: 'root' },
      { image: 'busybox', workdir: '/data' },
    ]);
  });

  test("each step is a VM on the service's mounts, with the image's entrypoint, and the service's user only for its own image", () => {
    const [spec] = parse(app);
    const steps = preStartSpecs(spec!);
    expect(steps.map((s) => s.name)).toEqual(['app-pre-start-1', 'app-pre-start-2', 'app-pre-start-3']);
    const [own, chown, bare] = steps;
    expect(own).toMatchObject({
      image: 'registry.test/app:1',
      command: ['migrate', '--up'],
      user: 'app',
      workdir: '/srv',
      volumes: ['data:/data', '/cache'],
      tmpfs: ['/scratch'],
      memoryMiB: 256,
      healthcheck: 'none',
      ports: [],
      extraHosts: [{ host: 'ledger', ip: '10.9.0.9' }],
      labels: { 'hyper.pre-start-of': 'app' },
    });
    // The step's environment comes after the service's, so its LEVEL wins.
    expect(own?.env).toEqual(['MODE=prod', 'LEVEL=info', 'LEVEL=debug']);
    expect(own?.aliases).toBeUndefined();
    // The service's entrypoint is its own: a step runs the image's, with the step's command.
    expect(own?.entrypoint).toBeUndefined();
    expect(own?.preStart).toBeUndefined();
    expect(chown).toMatchObject({ image: 'busybox', command: ['chown', '-R', '999', '/data'], user: 'root' });
    expect(chown?.guest).toEqual({ privileged: true });
    expect(chown?.entrypoint).toBeUndefined();
    // Another image: its own command and user; the service's working directory unless the step gives one.
    expect(bare).toMatchObject({ image: 'busybox', workdir: '/data' });
    expect(bare?.command).toBeUndefined();
    expect(bare?.user).toBeUndefined();
  });

  test('with replicas: the steps without per_replica run once for the service, the others once per replica', () => {
    const [spec] = parse(`services:
  web:
    image: web:1
    deploy: { replicas: 2 }
    pre_start:
      - command: [once]
      - command: [each]
        per_replica: true
`);
    expect(preStartSpecs(spec!).map((s) => [s.name, s.command])).toEqual([['web-pre-start-1', ['once']]]);
    expect(
      replicaSpecs(spec!)
        .flatMap(replicaPreStartSpecs)
        .map((s) => [s.name, s.command]),
    ).toEqual([
      ['web.1-pre-start-2', ['each']],
      ['web.2-pre-start-2', ['each']],
    ]);
    // Without replicas, per_replica changes nothing: every step runs before the one VM.
    const [single] = parse(`services:
  web:
    image: web:1
    pre_start:
      - command: [once]
      - command: [each]
        per_replica: true
`);
    expect(preStartSpecs(single!).map((s) => s.name)).toEqual(['web-pre-start-1', 'web-pre-start-2']);
    expect(replicaPreStartSpecs(single!)).toEqual([]);
  });

  test("a service named like another's step is refused", () => {
    const specs = parse(`services:
  app:
    image: app:1
    pre_start:
      - command: [migrate]
  app-pre-start-1:
    image: app:1
`);
    expect(() => validatePlan(specs)).toThrow(
      'service "app-pre-start-1" has the name of a pre_start step of "app"; rename it',
    );
  });

  test('bad steps are refused with their line', () => {
    expect(() =>
      parse(`services:
  app:
    image: app:1
    pre_start:
      - command: [migrate]
        image: "Not An Image"
`),
    ).toThrow(/services\.app\.pre_start\[0\]\.image \(line 6\)/);
    expect(() =>
      parse(`services:
  app:
    image: app:1
    pre_start:
      - commnd: [migrate]
`),
    ).toThrow(/pre_start\[0\]\.commnd \(line 5\) is not a known key; did you mean command\?/);
  });
});
