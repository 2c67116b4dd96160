/**
 * Image references, parsed the way Docker parses them (distribution/reference `ParseNormalizedNamed`,
 * followed by `TagNameOnly`): "redis" is docker.io/library/redis:latest.
 */

import { type ErrorKind, HyperError } from '../errors.js';

export interface ImageReference {
  /** Registry name as written in the reference, e.g. "docker.io", "localhost:5000", "ghcr.io". */
  registry: string;
  /** Path inside the registry, e.g. "library/redis". */
  repository: string;
  /** Absent only when the reference names a digest and no tag. */
  tag?: string;
  digest?: string;
  /** The text the reference was parsed from. */
  original: string;
}

export class ImageReferenceError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(text)} is not a valid image reference: ${reason}`);
    this.name = 'ImageReferenceError';
  }
}

export const DOCKER_HUB_REGISTRY = 'docker.io';
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const LEGACY_DOCKER_HUB_REGISTRY = 'index.docker.io';
const OFFICIAL_REPOSITORY_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';
const NAME_MAX_LENGTH = 255;

// The grammar of distribution/reference's regexp.go. The separator uses `-+` where the Go source has
// `[-]*`: it matches the same names, and stays linear under a backtracking regexp engine.
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6Address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainAndPort = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6Address})(?::[0-9]+)?`;
const tagPattern = '[\\w][\\w.-]{0,127}';
const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

const referenceRegexp = new RegExp(
  `^((?:${domainAndPort}/)?${remoteName})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`,
);
const imageIdRegexp = /^[a-f0-9]{64}$/;
const tagRegexp = new RegExp(`^${tagPattern}$`);

/** Hex length of each digest algorithm Docker accepts (those go-digest registers). */
export const DIGEST_HEX_LENGTHS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

const FORMAT_HINT = 'expected [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST]';

/** Parses an image reference as `docker pull` does; throws ImageReferenceError saying what is wrong. */
export function parseImageReference(text: string): ImageReference {
  const fail = (reason: string): never => {
    throw new ImageReferenceError(text, reason);
  };
  if (text === '') fail('it is empty');
  if (imageIdRegexp.test(text)) {
    fail('a 64-character hexadecimal string is an image ID, not a repository name');
  }
  if (text.includes('://')) fail(`an image reference has no URL scheme; ${FORMAT_HINT}`);

  const [registry, remainder] = splitRegistry(text);
  const tagSeparator = remainder.indexOf(':');
  const remote = tagSeparator === -1 ? remainder : remainder.slice(0, tagSeparator);
  if (remote.toLowerCase() !== remote) fail('repository names must be lowercase');

  const qualified = `${registry}/${remainder}`;
  const match = referenceRegexp.exec(qualified);
  if (!match) fail(describeFormatError(registry, remainder));
  const [, name = '', tag, digest] = match as RegExpExecArray;
  if (name.length > NAME_MAX_LENGTH) {
    fail(`the repository name is ${name.length} characters long; at most ${NAME_MAX_LENGTH} are allowed`);
  }
  if (digest !== undefined) {
    const problem = digestProblem(digest);
    if (problem) fail(problem);
  }

  const repository = name.slice(registry.length + 1);
  return {
    registry,
    repository,
    tag: tag ?? (digest === undefined ? DEFAULT_TAG : undefined),
    digest,
    original: text,
  };
}

/**
 * Splits off the registry. The first path component is a registry when it contains "." or ":" or is
 * "localhost"; otherwise the image is on Docker Hub, where one-component names live under "library/".
 *
 * Since distribution/reference v0.6 Docker also treats a first component with uppercase letters as a
 * registry ("Foo/bar" would pull from host "Foo"); we keep the older rule, which reports the uppercase.
 */
function splitRegistry(text: string): [registry: string, remainder: string] {
  const slash = text.indexOf('/');
  if (slash === -1) return [DOCKER_HUB_REGISTRY, OFFICIAL_REPOSITORY_PREFIX + text];

  const first = text.slice(0, slash);
  const rest = text.slice(slash + 1);
  let registry: string;
  let remainder: string;
  if (first === 'localhost' || /[.:]/.test(first)) {
    registry = first === LEGACY_DOCKER_HUB_REGISTRY ? DOCKER_HUB_REGISTRY : first;
    remainder = rest;
  } else {
    registry = DOCKER_HUB_REGISTRY;
    remainder = text;
  }
  if (registry === DOCKER_HUB_REGISTRY && !remainder.includes('/')) {
    remainder = OFFICIAL_REPOSITORY_PREFIX + remainder;
  }
  return [registry, remainder];
}

/** Says which part of an unparseable reference is wrong, as precisely as cheap checks allow. */
function describeFormatError(registry: string, remainder: string): string {
  if (!new RegExp(`^${domainAndPort}$`).test(registry)) {
    return `registry ${JSON.stringify(registry)} is not a valid host[:port]; ${FORMAT_HINT}`;
  }
  const at = remainder.indexOf('@');
  const beforeDigest = at === -1 ? remainder : remainder.slice(0, at);
  const lastSlash = beforeDigest.lastIndexOf('/');
  const colon = beforeDigest.indexOf(':', lastSlash + 1);
  const path = colon === -1 ? beforeDigest : beforeDigest.slice(0, colon);
  const tag = colon === -1 ? undefined : beforeDigest.slice(colon + 1);

  if (path === '' || path.endsWith('/') || path.split('/').some((part) => part === '')) {
    return `the repository name has an empty component; ${FORMAT_HINT}`;
  }
  if (!new RegExp(`^${remoteName}$`).test(path)) {
    return (
      `repository name components must be lowercase letters and digits, separated by ".", "_", "__" or "-" ` +
      `(and not start or end with one); ${FORMAT_HINT}`
    );
  }
  if (tag !== undefined && !tagRegexp.test(tag)) {
    return `tag ${JSON.stringify(tag)} is not valid: up to 128 letters, digits, "_", "." and "-", not starting with "." or "-"`;
  }
  if (at !== -1 && !new RegExp(`^${digestPattern}$`).test(remainder.slice(at + 1))) {
    return `digest ${JSON.stringify(remainder.slice(at + 1))} is not valid; expected sha256:<64 hex digits>`;
  }
  return `invalid reference format; ${FORMAT_HINT}`;
}

function digestProblem(digest: string): string | undefined {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const expectedLength = DIGEST_HEX_LENGTHS[algorithm];
  if (expectedLength === undefined) {
    return `unsupported digest algorithm ${JSON.stringify(algorithm)}; use sha256`;
  }
  if (hex.length !== expectedLength) {
    return `${algorithm} digests have ${expectedLength} hexadecimal digits, this one has ${hex.length}`;
  }
  if (!/^[a-f0-9]+$/.test(hex)) return `${algorithm} digests are written in lowercase hexadecimal`;
  return undefined;
}

/**
 * The reference as text. Fully qualified by default ("docker.io/library/redis:7");
 * `familiar` drops the Docker Hub registry and "library/" as Docker's UI does ("redis:7").
 */
export function formatReference(ref: ImageReference, options: { familiar?: boolean } = {}): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (options.familiar && ref.registry === DOCKER_HUB_REGISTRY) {
    const short = ref.repository.startsWith(OFFICIAL_REPOSITORY_PREFIX)
      ? ref.repository.slice(OFFICIAL_REPOSITORY_PREFIX.length)
      : ref.repository;
    name = short.includes('/') ? ref.repository : short;
  }
  const tag = ref.tag === undefined ? '' : `:${ref.tag}`;
  const digest = ref.digest === undefined ? '' : `@${ref.digest}`;
  return `${name}${tag}${digest}`;
}

/**
 * The host[:port] that serves the registry API for `ref`: Docker Hub's API lives on
 * registry-1.docker.io, and a `registry-mirror` (URL or host[:port]) replaces it, for Docker Hub only.
 */
export function registryApiHost(ref: ImageReference, options: { mirror?: string } = {}): string {
  if (ref.registry !== DOCKER_HUB_REGISTRY) return ref.registry;
  if (options.mirror) return mirrorHost(options.mirror);
  return DOCKER_HUB_API_HOST;
}

function mirrorHost(mirror: string): string {
  if (!mirror.includes('://')) return mirror.replace(/\/+$/, '');
  try {
    return new URL(mirror).host;
  } catch {
    throw new Error(`registry mirror ${JSON.stringify(mirror)} is not a URL or host[:port]`);
  }
}
