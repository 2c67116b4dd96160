import { HyperError, errorKind } from '../errors.js';

/** The newest and oldest Engine API versions served; clients negotiate down from theirs, as Docker's do. */
export const API_VERSION = '1.47';
export const MIN_API_VERSION = '1.24';

/** Docker's multiplexed stream ids (stdcopy). */
export const STDOUT = 1;
export const STDERR = 2;

/** One stdcopy frame: [stream, 0, 0, 0, size (big-endian u32)] then the bytes. Pure. */
export function frame(stream: number, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

/** "1.41" -> [1, 41]. */
function parts(version: string): [number, number] {
  const [major = '0', minor = '0'] = version.split('.');
  return [Number(major), Number(minor)];
}

export function compareVersions(a: string, b: string): number {
  const [am, an] = parts(a);
  const [bm, bn] = parts(b);
  return am === bm ? an - bn : am - bm;
}

/** A /vX.Y prefix taken off the path: the version the client asked for, refused when out of range, as Docker does. Pure. */
export function splitVersion(pathname: string): { version: string; path: string } {
  const match = /^\/v(\d+\.\d+)(\/.*)$/.exec(pathname);
  if (!match) return { version: API_VERSION, path: pathname };
  const version = match[1] as string;
  if (compareVersions(version, API_VERSION) > 0)
    throw new HyperError(
      `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`,
      { kind: 'Invalid' },
    );
  if (compareVersions(version, MIN_API_VERSION) < 0)
    throw new HyperError(
      `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
      { kind: 'Invalid' },
    );
  return { version, path: match[2] as string };
}

/** What no handler serves: 501, naming the request. */
export class NotImplementedError extends HyperError {
  override name = 'NotImplementedError';
}

/** The HTTP status for an error, from its kind: Docker's codes. Pure. */
export function statusFor(error: unknown): number {
  if (error instanceof NotImplementedError) return 501;
  switch (errorKind(error)) {
    case 'Invalid':
      return 400;
    case 'NotFound':
      return 404;
    case 'Conflict':
      return 409;
    case 'Forbidden':
      return 403;
    case 'Unavailable':
      return 503;
    default:
      return 500;
  }
}

/** Docker's filters query: {"label":["a=b"]} (or the older {"label":{"a=b":true}}). Pure. */
export function parseFilters(text: string | null): Record<string, string[]> {
  if (!text) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HyperError(`invalid filter: ${text} is not JSON`, { kind: 'Invalid' });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new HyperError('invalid filter: must be a JSON object of lists', { kind: 'Invalid' });
  const filters: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (Array.isArray(value)) filters[key] = value.map(String);
    else if (typeof value === 'object' && value !== null)
      filters[key] = Object.entries(value).flatMap(([k, on]) => (on ? [k] : []));
    else throw new HyperError(`invalid filter '${key}'`, { kind: 'Invalid' });
  }
  return filters;
}

/** A label filter entry "key" or "key=value" as the engine's label match. Pure. */
export function labelFilter(entries: readonly string[]): Record<string, string | undefined> {
  return Object.fromEntries(
    entries.map((entry) => {
      const at = entry.indexOf('=');
      return at < 0 ? [entry, undefined] : [entry.slice(0, at), entry.slice(at + 1)];
    }),
  );
}

/** Whether labels hold every label filter entry. Pure. */
export function labelsMatch(labels: Readonly<Record<string, string>>, entries: readonly string[]): boolean {
  return Object.entries(labelFilter(entries)).every(
    ([key, value]) => Object.hasOwn(labels, key) && (value === undefined || labels[key] === value),
  );
}

/** A duration as `docker ps` shows it, by Docker's own rules (go-units HumanDuration): whole units, truncated. Pure. */
export function humanDuration(seconds: number): string {
  const whole = Math.floor(seconds);
  if (whole < 1) return 'Less than a second';
  if (whole === 1) return '1 second';
  if (whole < 60) return `${whole} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(seconds / 3600 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(seconds / 3600 / 24 / 365)} years`;
}

/** A random name as Docker gives containers without one: adjective_noun. */
export function containerName(random: () => number = Math.random): string {
  const pick = (list: readonly string[]): string => list[Math.floor(random() * list.length)] as string;
  return `${pick(ADJECTIVES)}_${pick(NOUNS)}${Math.floor(random() * 1000)}`;
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'fond', 'keen', 'lucid', 'merry', 'quiet', 'sharp', 'tidy'];
const NOUNS = [
  'bohr',
  'curie',
  'dirac',
  'euler',
  'gauss',
  'hopper',
  'lovelace',
  'noether',
  'turing',
  'yalow',
];
