import { parsePortSpec } from '../../../src/network/ports.js';
import { parseComposeFile } from '../../../src/spec/compose.js';
import type { ContainerSpec } from '../../../src/spec/container.js';
import {
  isReplicaName,
  replicaNames,
  replicaSpecs,
  scaleServices,
  validatePlan,
} from '../../../src/spec/plan.js';

const FILE = '/repo/ci/compose.yml';
const parse = (text: string) => ({ services: parseComposeFile(text, FILE, () => '', {}) });

function spec(name: string, extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return { name, image: 'busybox', env: [], ports: [], volumes: [], dependsOn: [], tmpfs: [], ...extra };
}

describe('replicas in a compose file', () => {
  test('deploy.replicas and scale give the count; one replica is a plain service', () => {
    const services = parse(`services:
  web:
    image: nginx
    deploy: { replicas: 3 }
  worker:
    image: busybox
    scale: 2
  db:
    image: postgres
    deploy: { replicas: 1 }
`).services;
    expect(services.map((s) => [s.name, s.replicas])).toEqual([
      ['web', 3],
      ['worker', 2],
      ['db', undefined],
    ]);
  });
  test.each([
    [
      'scale and deploy.replicas that differ',
      'services:\n  web:\n    image: nginx\n    scale: 2\n    deploy: { replicas: 3 }\n',
      `${FILE}: services.web.deploy.replicas (line 5): deploy.replicas differs from scale; give one of them`,
    ],
    [
      'a container_name with replicas',
      'services:\n  web:\n    image: nginx\n    container_name: front\n    deploy: { replicas: 2 }\n',
      `${FILE}: services.web.container_name (line 4): container_name "front" names one container, and web has 2 replicas; remove container_name or the replicas`,
    ],
    [
      'scale: 0',
      'services:\n  web:\n    image: nginx\n    scale: 0\n',
      `${FILE}: services.web.scale (line 4): "0" is not a number of replicas: give a whole number of at least 1`,
    ],
  ])('%s is refused', (_what, text, message) => expect(() => parse(text)).toThrow(message));
});

describe('validatePlan with replicas', () => {
  const port = parsePortSpec('8080:80');
  test.each([
    [
      'two services on one host port, one with replicas',
      [spec('web', { replicas: 3, ports: [port] }), spec('api', { ports: [port] })],
      'services "web" and "api" both publish host port 8080/tcp',
    ],
    [
      'a container name (from --scale)',
      [spec('web', { replicas: 2, containerName: 'front' })],
      'service "web": container_name "front" names one container, and it has 2 replicas',
    ],
    [
      'a UDP port',
      [spec('dns', { replicas: 2, ports: [parsePortSpec('53:53/udp')] })],
      'service "dns" has 2 replicas and publishes 53/udp; a service with replicas publishes TCP ports only',
    ],
    [
      'a named volume',
      [spec('db', { replicas: 2, volumes: ['data:/var/lib/data'] })],
      'volume "data" would be attached to the 2 replicas of "db"; a volume can be attached to one VM at a time',
    ],
    [
      "another service with a replica's name",
      [spec('web', { replicas: 2 }), spec('web.2')],
      'service "web.2" has the name of a replica of "web"; rename it',
    ],
  ])('%s is refused', (_what, specs, message) => expect(() => validatePlan(specs)).toThrow(message));
  test('a service that depends on one with replicas boots after all of them', () =>
    expect(
      validatePlan([
        spec('web', { replicas: 2 }),
        spec('client', { dependsOn: [{ service: 'web', condition: 'service_started' }] }),
      ]).map((wave) => wave.map((s) => s.name)),
    ).toEqual([['web'], ['client']]));
});

describe('replicaSpecs', () => {
  test("one VM per replica, each with its own name and hostname, answering to the service's names too", () => {
    const replicas = replicaSpecs(
      spec('web', { replicas: 2, aliases: ['front'], ports: [parsePortSpec('8080:80')] }),
    );
    expect(replicas.map((r) => [r.name, r.hostname, r.replicaOf, r.aliases, r.replicas])).toEqual([
      ['web.1', 'web.1', 'web', ['web', 'front'], undefined],
      ['web.2', 'web.2', 'web', ['web', 'front'], undefined],
    ]);
    expect(replicas[1]?.ports).toEqual([parsePortSpec('8080:80')]);
  });
  test("a hostname the file gives is every replica's; a service without replicas is itself", () => {
    expect(replicaSpecs(spec('web', { replicas: 2, hostname: 'front' })).map((r) => r.hostname)).toEqual([
      'front',
      'front',
    ]);
    const single = spec('db');
    expect(replicaSpecs(single)).toEqual([single]);
    expect(replicaNames(single)).toEqual(['db']);
  });

  test('isReplicaName knows the names replicaNames gives, and no others', () => {
    const names = replicaNames(spec('web', { replicas: 12 }));
    expect(names.every((name) => isReplicaName(name, 'web'))).toBe(true);
    expect(
      ['web', 'web.', 'web.0', 'web.01', 'web.1a', 'web.pre-start-1', 'webx.1', 'web.1-pre-start-1'].filter(
        (n) => isReplicaName(n, 'web'),
      ),
    ).toEqual([]);
  });
});

describe('hyper up --scale', () => {
  const specs = [spec('web', { replicas: 3 }), spec('db')];
  test('sets or replaces the count; 1 makes a plain service', () =>
    expect(scaleServices(specs, ['db=2', 'web=1']).map((s) => [s.name, s.replicas])).toEqual([
      ['web', undefined],
      ['db', 2],
    ]));
  test.each([
    ['web', '--scale: "web" is not SERVICE=COUNT'],
    ['cache=2', '--scale: there is no service "cache"; services: web, db'],
    ['web=0', '--scale: "0" is not a number of replicas: give a whole number of at least 1'],
    ['web=-1', '--scale: "-1" is not a number of replicas: give a whole number of at least 1'],
  ])('%s is refused', (scale, message) => expect(() => scaleServices(specs, [scale])).toThrow(message));
  test('a service scaled twice is refused', () =>
    expect(() => scaleServices(specs, ['web=2', 'web=3'])).toThrow('--scale: service "web" is scaled twice'));
});
