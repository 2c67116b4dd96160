import net from 'node:net';
import { findPortClash, parsePortSpec, portKey, resolvePorts } from '../../../src/network/ports.js';

describe('parsePortSpec', () => {
  test.each([
    ['8080:80', { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    ['80', { hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }],
    [6379, { hostIp: '127.0.0.1', hostPort: 0, containerPort: 6379, protocol: 'tcp' }],
    ['0.0.0.0:5432:5432', { hostIp: '0.0.0.0', hostPort: 5432, containerPort: 5432, protocol: 'tcp' }],
    ['127.0.0.2::80', { hostIp: '127.0.0.2', hostPort: 0, containerPort: 80, protocol: 'tcp' }],
    ['5353:53/udp', { hostIp: '127.0.0.1', hostPort: 5353, containerPort: 53, protocol: 'udp' }],
    ['53/UDP', { hostIp: '127.0.0.1', hostPort: 0, containerPort: 53, protocol: 'udp' }],
    ['[::1]:8080:80', { hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
  ])('%s', (text, expected) => {
    expect(parsePortSpec(text)).toEqual(expected);
  });

  test.each([
    ['54x2:80', '"54x2:80" is not a port mapping: "54x2" is not a port'],
    ['8080:70000', '70000 is out of range 1-65535'],
    ['80/sctp', 'protocol "sctp" is not tcp or udp'],
    ['300.1.1.1:80:80', '"300.1.1.1" is not an IP address'],
    ['1:2:3:4', 'is not a port mapping; use "HOST:CONTAINER"'],
    ['', '"" is not a port'],
  ])('%s is refused', (text, message) => {
    expect(() => parsePortSpec(text)).toThrow(message);
  });
});

describe('findPortClash', () => {
  test('the same host port and protocol twice clash; tcp and udp do not', () => {
    expect(findPortClash([parsePortSpec('80:80'), parsePortSpec('80:81')])).toBeDefined();
    expect(findPortClash([parsePortSpec('80:80'), parsePortSpec('80:80/udp')])).toBeUndefined();
    expect(findPortClash([parsePortSpec('80'), parsePortSpec('80')])).toBeUndefined();
  });
});

describe('resolvePorts (binds on loopback only)', () => {
  test('picks a free host port when none is given', async () => {
    const [port] = await resolvePorts([parsePortSpec('80')]);
    expect(port?.hostPort).toBeGreaterThan(0);
    expect(port?.containerPort).toBe(80);
  });

  test('a host port already in use is named in the error', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const taken = (server.address() as net.AddressInfo).port;
    try {
      await expect(resolvePorts([parsePortSpec(`${taken}:80`)])).rejects.toThrow(
        `host port ${taken} is already in use`,
      );
    } finally {
      server.close();
    }
  });

  test('never hands out a port the job has already handed out, nor one twice in a call', async () => {
    // Ports picked for one service are free to the kernel until its QEMU binds
    // them, and bind(0) can return them again for the next service.
    const [first] = await resolvePorts([parsePortSpec('80')]);
    const claimed = new Set([portKey('tcp', first?.hostPort ?? 0)]);
    const picked = await resolvePorts(
      Array.from({ length: 20 }, (_, i) => parsePortSpec(String(1000 + i))),
      claimed,
    );
    const ports = picked.map((p) => p.hostPort);
    expect(ports).not.toContain(first?.hostPort);
    expect(new Set(ports).size).toBe(20);
    await expect(resolvePorts([parsePortSpec(`${first?.hostPort}:80`)], claimed)).rejects.toThrow(
      `host port ${first?.hostPort} is already in use (127.0.0.1:${first?.hostPort}/tcp)`,
    );
  });

  test('two mappings of one host port are refused before binding', async () => {
    await expect(resolvePorts([parsePortSpec('18080:80'), parsePortSpec('18080:81')])).rejects.toThrow(
      'host port 18080/tcp is published twice',
    );
  });
});
