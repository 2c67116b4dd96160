import net from 'node:net';
import { type ErrorKind, HyperError } from '../errors.js';

/** An IPv4 network: its first address as a 32-bit number, and the prefix length. */
export interface Cidr {
  base: number;
  prefix: number;
}

export class CidrError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'CidrError';
}

export function ipToNumber(ip: string): number {
  if (!net.isIPv4(ip)) throw new CidrError(`"${ip}" is not an IPv4 address`);
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

export function numberToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

function size(prefix: number): number {
  return 2 ** (32 - prefix);
}

/** `10.1.2.0/24`; a bare address is a /32. Host bits must be zero unless `loose` (an interface's `10.1.2.5/24`). Pure. */
export function parseCidr(text: string, loose = false): Cidr {
  const [ip = '', prefixText, extra] = text.trim().split('/');
  if (extra !== undefined || (prefixText !== undefined && !/^\d{1,2}$/.test(prefixText)))
    throw new CidrError(`"${text}" is not an IPv4 address or CIDR`);
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (prefix > 32) throw new CidrError(`"${text}": prefix /${prefix} is longer than 32`);
  let address: number;
  try {
    address = ipToNumber(ip);
  } catch {
    throw new CidrError(`"${text}" is not an IPv4 address or CIDR`);
  }
  const base = address - (address % size(prefix));
  if (base !== address && !loose)
    throw new CidrError(`"${text}" has host bits set; the network is ${formatCidr({ base, prefix })}`);
  return { base, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${numberToIp(cidr.base)}/${cidr.prefix}`;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + size(b.prefix) && b.base < a.base + size(a.prefix);
}

/** The n-th address of a network (1 is the first host). */
export function nthAddress(cidr: Cidr, n: number): string {
  if (n <= 0 || n >= size(cidr.prefix) - 1)
    throw new CidrError(`${formatCidr(cidr)} has no host number ${n}; it holds ${size(cidr.prefix) - 2}`);
  return numberToIp(cidr.base + n);
}

/** How many hosts the network holds besides its gateway. */
export function guestCapacity(cidr: Cidr): number {
  return Math.max(0, size(cidr.prefix) - 3);
}
