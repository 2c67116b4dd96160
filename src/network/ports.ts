import dgram from 'node:dgram';
import net from 'node:net';
import { type ErrorKind, HyperError } from '../errors.js';

/** A `-p` / `ports:` entry as the user wrote it, parsed. hostPort 0 means "pick a free one". */
export interface PortSpec {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

export interface PublishedPort extends PortSpec {
  /** The host port actually bound (picked when the spec left it open). */
  hostPort: number;
}

export class PortSpecError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'PortSpecError';
}

const FORMS = 'use "HOST:CONTAINER", "CONTAINER" or "IP:HOST:CONTAINER", optionally with "/tcp" or "/udp"';

function parsePort(text: string, spec: string, allowZero: boolean): number {
  if (!/^\d{1,5}$/.test(text))
    throw new PortSpecError(`"${spec}" is not a port mapping: "${text}" is not a port; ${FORMS}`);
  const port = Number(text);
  if (port > 65535 || (port === 0 && !allowZero)) {
    throw new PortSpecError(`"${spec}" is not a port mapping: ${port} is out of range 1-65535`);
  }
  return port;
}

/** Parses Docker's publish syntax: `[[IP:]HOST:]CONTAINER[/PROTO]`, IPv6 hosts in brackets. Pure. */
export function parsePortSpec(spec: string | number): PortSpec {
  const text = String(spec).trim();
  let rest = text;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const proto = rest.slice(slash + 1).toLowerCase();
    if (proto !== 'tcp' && proto !== 'udp') {
      throw new PortSpecError(`"${text}" is not a port mapping: protocol "${proto}" is not tcp or udp`);
    }
    protocol = proto;
    rest = rest.slice(0, slash);
  }
  let hostIp = '127.0.0.1';
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(rest);
  if (bracketed) {
    hostIp = bracketed[1] ?? '';
    rest = bracketed[2] ?? '';
    if (net.isIPv6(hostIp) === false)
      throw new PortSpecError(`"${text}" is not a port mapping: "${hostIp}" is not an IPv6 address`);
  }
  const parts = rest.split(':');
  if (parts.length === 3 && !bracketed) {
    hostIp = parts.shift() ?? '';
    if (!net.isIP(hostIp))
      throw new PortSpecError(`"${text}" is not a port mapping: "${hostIp}" is not an IP address`);
  }
  if (parts.length === 1 && !bracketed) {
    return { hostIp, hostPort: 0, containerPort: parsePort(parts[0] ?? '', text, false), protocol };
  }
  if (parts.length !== 2 || (bracketed && parts.length !== 2))
    throw new PortSpecError(`"${text}" is not a port mapping; ${FORMS}`);
  const [host = '', container = ''] = parts;
  return {
    hostIp,
    hostPort: host === '' ? 0 : parsePort(host, text, false),
    containerPort: parsePort(container, text, false),
    protocol,
  };
}

/** Finds the first duplicate host binding in a set of specs (two mappings cannot share one host port). */
export function findPortClash(specs: readonly PortSpec[]): [PortSpec, PortSpec] | undefined {
  for (let i = 0; i < specs.length; i++) {
    for (let j = i + 1; j < specs.length; j++) {
      const a = specs[i] as PortSpec;
      const b = specs[j] as PortSpec;
      if (a.hostPort !== 0 && a.hostPort === b.hostPort && a.protocol === b.protocol) return [a, b];
    }
  }
  return undefined;
}

/** Binds and releases a port to learn whether it is free, or asks the kernel for a free one (port 0). */
function probeBind(ip: string, port: number, protocol: 'tcp' | 'udp'): Promise<number> {
  return new Promise((resolve, reject) => {
    if (protocol === 'udp') {
      const socket = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
      socket.once('error', reject);
      socket.bind(port, ip, () => {
        const bound = socket.address().port;
        socket.close(() => resolve(bound));
      });
      return;
    }
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port, host: ip, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

/** How a host port is known among the ports a job has claimed: "tcp:8080". */
export function portKey(protocol: 'tcp' | 'udp', port: number): string {
  return `${protocol}:${port}`;
}

/**
 * A free port from the kernel that is not one of `claimed`: a port the job
 * has handed out but whose QEMU has not bound it yet is free to the kernel,
 * and bind(0) can give it again.
 */
async function freePort(ip: string, protocol: 'tcp' | 'udp', claimed: ReadonlySet<string>): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probeBind(ip, 0, protocol);
    if (!claimed.has(portKey(protocol, port))) return port;
  }
  throw new PortSpecError(`no free ${protocol} port on ${ip} that the job has not already handed out`, {
    kind: 'Conflict',
  });
}

/**
 * Checks each requested host port is free and picks one where none was asked
 * for, never one in `claimed` (the job's ports, by portKey) nor one picked
 * earlier in the same call.
 */
export async function resolvePorts(
  specs: readonly PortSpec[],
  claimed: ReadonlySet<string> = new Set(),
): Promise<PublishedPort[]> {
  const clash = findPortClash(specs);
  if (clash)
    throw new PortSpecError(`host port ${clash[0].hostPort}/${clash[0].protocol} is published twice`);
  const taken = new Set(claimed);
  const published: PublishedPort[] = [];
  for (const spec of specs) {
    try {
      if (spec.hostPort !== 0 && taken.has(portKey(spec.protocol, spec.hostPort)))
        throw Object.assign(new Error('claimed by the job'), { code: 'EADDRINUSE' });
      const hostPort =
        spec.hostPort === 0
          ? await freePort(spec.hostIp, spec.protocol, taken)
          : await probeBind(spec.hostIp, spec.hostPort, spec.protocol);
      taken.add(portKey(spec.protocol, hostPort));
      published.push({ ...spec, hostPort });
    } catch (error: unknown) {
      const code = (error as NodeJS.ErrnoException).code;
      const where = `${spec.hostIp}:${spec.hostPort}/${spec.protocol}`;
      if (code === 'EADDRINUSE')
        throw new PortSpecError(`host port ${spec.hostPort} is already in use (${where})`, {
          kind: 'Conflict',
        });
      if (code === 'EADDRNOTAVAIL')
        throw new PortSpecError(`cannot publish on ${where}: no such address on this host`);
      if (code === 'EACCES')
        throw new PortSpecError(`cannot publish on ${where}: permission denied (ports below 1024 need root)`);
      throw error;
    }
  }
  return published;
}

export function formatPort(port: PublishedPort): string {
  const host = net.isIPv6(port.hostIp) ? `[${port.hostIp}]` : port.hostIp;
  return `${host}:${port.hostPort}->${port.containerPort}/${port.protocol}`;
}
