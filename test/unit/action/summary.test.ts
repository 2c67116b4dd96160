import { summaryRows } from '../../../src/action/summary.js';
import { portVariables, servicesContext, type ServiceStatus } from '../../../src/engine/up.js';

function status(name: string, extra: Partial<ServiceStatus> = {}): ServiceStatus {
  return {
    name,
    image: 'nginx',
    imageDigest: 'sha256:ab',
    imageConfigDigest: 'sha256:cd',
    imageBlobs: [],
    accel: 'kvm',
    memoryMiB: 512,
    ports: [],
    bootMs: 100,
    healthyMs: 300,
    origin: 'boot-template',
    ...extra,
  };
}

describe('the job summary', () => {
  test('one row per service; replicas grouped under their service, with the range of their times', () => {
    const port = { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' as const };
    const rows = summaryRows([
      status('db', { image: 'postgres', origin: 'service-template' }),
      status('web.1', { replicaOf: 'web', ports: [port], bootMs: 120, healthyMs: 400 }),
      status('web.2', { replicaOf: 'web', ports: [port], bootMs: 90, healthyMs: 350, origin: 'boot' }),
    ]);
    expect(rows).toEqual([
      ['db', 'postgres@sha256:ab', 'kvm', 'service template', '100', '300', '', '512 MiB'],
      [
        'web (2 replicas: web.1, web.2)',
        'nginx@sha256:ab',
        'kvm',
        'boot template, full boot',
        '90–120',
        '350–400',
        '127.0.0.1:8080->80/tcp',
        '2 × 512 MiB',
      ],
    ]);
  });
});

describe('the services output and port variables', () => {
  test('a service with replicas appears once, under its own name, with the port its replicas share', () => {
    const port = { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' as const };
    const statuses = [
      status('web.1', { replicaOf: 'web', ports: [port] }),
      status('web.2', { replicaOf: 'web', ports: [port] }),
      status('db', { ports: [{ ...port, hostPort: 5432, containerPort: 5432 }] }),
    ];
    expect(servicesContext(statuses)).toEqual({
      web: { ports: { '80': '8080' } },
      db: { ports: { '5432': '5432' } },
    });
    expect(portVariables(statuses)).toEqual({ HYPER_WEB_PORT_80: '8080', HYPER_DB_PORT_5432: '5432' });
  });
});
