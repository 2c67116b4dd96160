import { type ErrorKind, HyperError, type HyperErrorOptions } from '../../errors.js';
import type { Descriptor, ImageIndex, ImageManifest, Platform } from '../../types/oci/index.js';
import { DockerReferenceTypeAnnotation, MediaType } from '../../types/oci/index.js';
import { digestOf } from '../store.js';
import type { RegistryClient } from './client.js';
import { describeStatus, networkError, parseRetryAfter, readErrorBody, RegistryError } from './errors.js';
import { withRetry, type RetryPolicy } from './retry.js';

/** Every manifest format we can run, multi-platform ones first, as the Accept header lists them. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
];

const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];
const IMAGE_MEDIA_TYPES: readonly string[] = [MediaType.OciManifest, MediaType.DockerManifest];
const CONFIG_MEDIA_TYPES: readonly string[] = [MediaType.OciConfig, MediaType.DockerConfig];
const SCHEMA1_MEDIA_TYPES: readonly string[] = [
  MediaType.DockerManifestV1,
  MediaType.DockerManifestV1Signed,
  'application/json+prettyjws',
];
/** Registries cap manifests at 4 MiB; anything larger is not a manifest. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** A manifest that cannot be used: unsupported format, not an image, or no entry for our platform. */
export class ManifestError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  constructor(message: string, options?: HyperErrorOptions) {
    super(message, options);
    this.name = 'ManifestError';
  }
}

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; index: ImageIndex }
  | { kind: 'image'; mediaType: string; manifest: ImageManifest };

export type FetchedManifest = ParsedManifest & { digest: string; bytes: Buffer };

/**
 * Reads a manifest as served with `contentType`. `subject` names it in messages
 * ("localhost:5000/app:1"). Throws ManifestError for schema 1 and for anything that is not an image.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | null,
  subject: string,
): ParsedManifest {
  const served = contentType?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (SCHEMA1_MEDIA_TYPES.includes(served)) throw schema1Error(subject, served);

  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new ManifestError(
      `the manifest of ${subject} is not valid JSON (served as ${served || 'no type'})`,
    );
  }
  if (typeof body !== 'object' || body === null) {
    throw new ManifestError(`the manifest of ${subject} is not a JSON object`);
  }
  const fields = body as Record<string, unknown>;
  if (fields.schemaVersion === 1) throw schema1Error(subject, MediaType.DockerManifestV1);

  const declared = typeof fields.mediaType === 'string' ? fields.mediaType : undefined;
  const mediaType =
    [served, declared].find((type) => type && MANIFEST_MEDIA_TYPES.includes(type)) ?? inferMediaType(fields);

  if (mediaType !== undefined && INDEX_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(fields.manifests)) {
      throw new ManifestError(`the index of ${subject} has no "manifests" list`);
    }
    return { kind: 'index', mediaType, index: body as ImageIndex };
  }
  if (mediaType !== undefined && IMAGE_MEDIA_TYPES.includes(mediaType)) {
    const manifest = body as ImageManifest;
    if (typeof manifest.config !== 'object' || manifest.config === null || !Array.isArray(manifest.layers)) {
      throw new ManifestError(`the manifest of ${subject} lacks "config" or "layers"`);
    }
    if (!CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) {
      throw new ManifestError(
        `${subject} is not a container image: its config has media type ${manifest.config.mediaType}` +
          `${manifest.artifactType ? ` (artifact type ${manifest.artifactType})` : ''}`,
      );
    }
    return { kind: 'image', mediaType, manifest };
  }
  throw new ManifestError(
    `${subject} has media type ${served || declared || 'unknown'}, which is not a container image ` +
      `(expected one of ${MANIFEST_MEDIA_TYPES.join(', ')})`,
  );
}

/** For registries that serve manifests as application/json and bodies without `mediaType`. */
function inferMediaType(fields: Record<string, unknown>): string | undefined {
  if (fields.schemaVersion !== 2) return undefined;
  if (Array.isArray(fields.manifests)) return MediaType.OciIndex;
  if (Array.isArray(fields.layers) && typeof fields.config === 'object') return MediaType.OciManifest;
  return undefined;
}

function schema1Error(subject: string, mediaType: string): ManifestError {
  return new ManifestError(
    `${subject} uses the Docker image manifest schema 1 (${mediaType}), which is deprecated and not supported; ` +
      'push the image again with a current Docker or OCI tool to convert it to schema 2',
  );
}

/** Canonical names: x86_64 is amd64, aarch64 is arm64 (variant v8), armhf is arm/v7, and so on. */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === 'macos' ? 'darwin' : platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() || undefined;
  if (variant !== undefined && /^\d+$/.test(variant)) variant = `v${variant}`;

  switch (architecture) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'i386':
    case 'i686':
    case 'x86':
      architecture = '386';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      variant = variant ?? 'v8';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      variant = variant ?? 'v7';
      break;
  }
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
}

/** "linux/arm64/v8", "linux/amd64". */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** Attestations (SBOM, provenance) sit in indexes beside images, marked one of these two ways. */
export function isAttestation(descriptor: Descriptor): boolean {
  if (descriptor.annotations?.[DockerReferenceTypeAnnotation] !== undefined) return true;
  return descriptor.platform?.os === 'unknown' && descriptor.platform.architecture === 'unknown';
}

/**
 * Variants that run where `wanted` runs, best first: arm/v7 also runs v6 and v5, amd64/v3 also runs
 * v2 and the baseline (no variant). `undefined` stands for "no variant".
 */
function compatibleVariants(wanted: Platform): (string | undefined)[] {
  const level = Number(wanted.variant?.slice(1));
  const downTo = (lowest: number): (string | undefined)[] =>
    Number.isInteger(level) && level >= lowest
      ? Array.from({ length: level - lowest + 1 }, (_, index) => `v${level - index}`)
      : [wanted.variant];
  switch (wanted.architecture) {
    case 'amd64':
      return wanted.variant === undefined ? [undefined] : [...downTo(2), undefined];
    case 'arm64':
      return downTo(8);
    case 'arm':
      return downTo(5);
    default:
      return [wanted.variant];
  }
}

/**
 * Picks the image manifest for `wanted` from an index, skipping attestations. Throws ManifestError
 * listing the platforms the index has when none fits.
 */
export function selectPlatform(index: ImageIndex, wanted: Platform, subject: string): Descriptor {
  const target = normalizePlatform(wanted);
  const images = index.manifests.filter((entry) => !isAttestation(entry) && entry.platform !== undefined);
  for (const variant of compatibleVariants(target)) {
    const match = images.find((entry) => {
      const platform = normalizePlatform(entry.platform as Platform);
      return (
        platform.os === target.os &&
        platform.architecture === target.architecture &&
        platform.variant === variant
      );
    });
    if (match) return match;
  }
  const available = [
    ...new Set(images.map((entry) => formatPlatform(normalizePlatform(entry.platform as Platform)))),
  ];
  throw new ManifestError(
    `${subject} has no image for ${formatPlatform(target)}; ` +
      (available.length > 0 ? `it has ${available.join(', ')}` : 'its index lists no platforms'),
    { kind: 'NotFound' },
  );
}

/**
 * GETs a manifest by tag or digest (retrying 429, 5xx and broken connections) and parses it.
 * When `reference` is a digest, the content must hash to it.
 */
export async function fetchManifest(
  client: RegistryClient,
  reference: string,
  subject: string,
  retry: RetryPolicy,
): Promise<FetchedManifest> {
  return withRetry(retry, async () => {
    const response = await client.request(`/v2/${client.repository}/manifests/${reference}`, {
      headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') },
    });
    if (!response.ok) {
      const body = await readErrorBody(response);
      const details = {
        status: response.status,
        code: body.code,
        retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
      };
      if (response.status === 404) {
        throw new RegistryError(
          `manifest for ${subject} not found on registry ${client.host} (${body.code ?? 'HTTP 404'})`,
          { ...details, kind: 'NotFound' },
        );
      }
      throw new RegistryError(
        `registry ${client.host} answered ${describeStatus(response.status, body)} for the manifest of ${subject}`,
        details,
      );
    }
    const bytes = await readBody(
      response,
      MAX_MANIFEST_BYTES,
      `the manifest of ${subject} from ${client.host}`,
    );
    const isDigest = reference.includes(':');
    const digest = digestOf(bytes, isDigest ? reference : 'sha256:');
    if (isDigest && digest !== reference) {
      throw new ManifestError(
        `the manifest of ${subject} from registry ${client.host} failed verification: its content has digest ${digest}`,
        { kind: 'Internal' },
      );
    }
    return { ...parseManifest(bytes, response.headers.get('content-type'), subject), digest, bytes };
  });
}

async function readBody(response: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await response.body?.cancel().catch(() => undefined);
    throw new ManifestError(`${what} is ${declared} bytes, more than the ${limit} a manifest may have`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body ?? []) {
      total += chunk.length;
      if (total > limit)
        throw new ManifestError(`${what} is more than the ${limit} bytes a manifest may have`);
      chunks.push(chunk);
    }
  } catch (error: unknown) {
    if (error instanceof ManifestError) throw error;
    throw networkError(`reading ${what} failed`, error);
  }
  return Buffer.concat(chunks);
}
