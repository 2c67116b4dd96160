import { parsePortSpec } from '../../../src/network/ports.js';
import { validatePlan } from '../../../src/spec/plan.js';
import type { ContainerSpec } from '../../../src/spec/container.js';
import { specError } from './spec-error.js';

function service(name: string, dependsOn: string[] = [], extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name,
    image: 'busybox',
    env: [],
    ports: [],
    volumes: [],
    dependsOn: dependsOn.map((service) => ({ service, condition: 'service_started' })),
    tmpfs: [],
    ...extra,
  };
}
const names = (waves: ContainerSpec[][]) => waves.map((wave) => wave.map((spec) => spec.name));

describe('validatePlan: boot waves', () => {
  test.each([
    ['no services', [], []],
    ['independent services boot together', [service('a'), service('b')], [['a', 'b']]],
    ['a chain', [service('c', ['b']), service('b', ['a']), service('a')], [['a'], ['b'], ['c']]],
    [
      'a diamond',
      [service('app', ['cache', 'db']), service('cache', ['base']), service('db', ['base']), service('base')],
      [['base'], ['cache', 'db'], ['app']],
    ],
    [
      'a service waits for its slowest dependency',
      [service('web', ['db', 'migrate']), service('migrate', ['db']), service('db'), service('mail')],
      [['db', 'mail'], ['migrate'], ['web']],
    ],
  ])('%s', (_what, specs, waves) => {
    expect(names(validatePlan(specs))).toEqual(waves);
  });
});

describe('validatePlan: bad plans, exact messages', () => {
  const healthy = (name: string, on: string): ContainerSpec => ({
    ...service(name),
    dependsOn: [{ service: on, condition: 'service_healthy' }],
  });
  test.each([
    [
      'a 3-cycle, listed in order',
      [service('a', ['b']), service('b', ['c']), service('c', ['a'])],
      'services depend on each other in a cycle: a -> b -> c -> a',
    ],
    [
      'a cycle reached from outside it',
      [service('web', ['a']), service('a', ['b']), service('b', ['a'])],
      'services depend on each other in a cycle: a -> b -> a',
    ],
    [
      'a service that depends on itself',
      [service('a', ['a'])],
      'services depend on each other in a cycle: a -> a',
    ],
    [
      'an unknown dependency',
      [service('web', ['db', 'cache']), service('db')],
      'service "web" depends on "cache", which is not defined; services: web, db',
    ],
    ['a duplicate name', [service('db'), service('web'), service('db')], 'service "db" is defined twice'],
    [
      'a host port clash',
      [
        service('db', [], { ports: [parsePortSpec('5432:5432')] }),
        service('db2', [], { ports: [parsePortSpec('0.0.0.0:5432:5433')] }),
      ],
      'services "db" and "db2" both publish host port 5432/tcp',
    ],
    [
      'one service publishing a host port twice',
      [service('web', [], { ports: [parsePortSpec('8080:80'), parsePortSpec('8080:81')] })],
      'service "web" publishes host port 8080/tcp twice',
    ],
    [
      'waiting for the health of a service without a healthcheck',
      [healthy('web', 'db'), service('db', [], { healthcheck: 'none' })],
      'service "web" waits for "db" to be healthy, but "db" has its healthcheck disabled',
    ],
  ])('%s', (_what, specs, message) => {
    expect(specError(() => validatePlan(specs))).toBe(message);
  });

  test('the same host port on tcp and udp, and open host ports, do not clash', () => {
    const specs = [
      service('dns', [], { ports: [parsePortSpec('5353:53/udp'), parsePortSpec('80')] }),
      service('web', [], { ports: [parsePortSpec('5353:53'), parsePortSpec('80')] }),
    ];
    expect(names(validatePlan(specs))).toEqual([['dns', 'web']]);
  });
});

describe('validatePlan: mounts', () => {
  test('a named volume attached to two services is refused, naming both', () => {
    const specs = [
      service('a', [], { volumes: ['shared:/data'] }),
      service('b', [], { volumes: ['shared:/other'] }),
    ];
    expect(specError(() => validatePlan(specs))).toBe(
      'volume "shared" is used by both "a" and "b"; a volume can be attached to one VM at a time',
    );
  });

  test('a bad mount names its service', () => {
    expect(specError(() => validatePlan([service('db', [], { volumes: ['data:rel'] })]))).toBe(
      'service "db": volume "data:rel": the path in the container must be absolute, not "rel"',
    );
  });
});
