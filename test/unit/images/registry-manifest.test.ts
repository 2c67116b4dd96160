import { readFileSync } from 'node:fs';

import {
  formatPlatform,
  isAttestation,
  ManifestError,
  normalizePlatform,
  parseManifest,
  selectPlatform,
} from '../../../src/images/registry/manifest.js';
import type { ImageIndex, Platform } from '../../../src/types/oci/index.js';
import { MediaType } from '../../../src/types/oci/index.js';

function fixture(name: string): Buffer {
  return readFileSync(new URL(`../../support/registry/fixtures/${name}.json`, import.meta.url));
}

function index(name: string): ImageIndex {
  return JSON.parse(fixture(name).toString('utf8')) as ImageIndex;
}

const digest = (char: string): string => `sha256:${char.repeat(64)}`;

describe('selectPlatform', () => {
  const cases: [fixture: string, wanted: Platform, expected: string][] = [
    ['index-oci-multiarch', { os: 'linux', architecture: 'amd64' }, digest('1')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'x86_64' }, digest('1')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm64' }, digest('2')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm64', variant: 'v8' }, digest('2')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'aarch64' }, digest('2')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm', variant: 'v7' }, digest('3')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm' }, digest('3')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm', variant: 'v6' }, digest('4')],
    ['index-oci-multiarch', { os: 'linux', architecture: 'arm', variant: '8' }, digest('3')],
    ['index-oci-multiarch', { os: 'linux', architecture: 's390x' }, digest('5')],
    ['index-oci-multiarch', { os: 'windows', architecture: 'amd64' }, digest('6')],
    // Docker manifest list: arm64 without variant is arm64/v8; arm/v7 runs arm/v5; amd64/v3 is not the baseline
    ['manifest-list-docker', { os: 'linux', architecture: 'arm64', variant: 'v8' }, digest('b')],
    ['manifest-list-docker', { os: 'linux', architecture: 'arm', variant: 'v7' }, digest('d')],
    ['manifest-list-docker', { os: 'linux', architecture: 'arm', variant: 'v6' }, digest('d')],
    ['manifest-list-docker', { os: 'linux', architecture: 'amd64', variant: 'v3' }, digest('c')],
    ['manifest-list-docker', { os: 'linux', architecture: 'amd64', variant: 'v4' }, digest('c')],
    ['manifest-list-docker', { os: 'linux', architecture: 'i386' }, digest('a')],
  ];

  it.each(cases)('in %s picks %j', (name, wanted, expected) => {
    expect(selectPlatform(index(name), wanted, 'example/app:1').digest).toBe(expected);
  });

  const failures: [fixture: string, wanted: Platform, message: string][] = [
    [
      'index-arm-only',
      { os: 'linux', architecture: 'amd64' },
      'example/app:1 has no image for linux/amd64; it has linux/arm64/v8, linux/arm/v7',
    ],
    [
      'manifest-list-docker',
      { os: 'linux', architecture: 'amd64' },
      'example/app:1 has no image for linux/amd64; it has linux/386, linux/arm64/v8, linux/amd64/v3, linux/arm/v5',
    ],
    [
      'manifest-list-docker',
      { os: 'linux', architecture: 'ppc64le' },
      'example/app:1 has no image for linux/ppc64le; it has linux/386, linux/arm64/v8, linux/amd64/v3, linux/arm/v5',
    ],
    [
      'index-oci-multiarch',
      { os: 'linux', architecture: 'riscv64' },
      'example/app:1 has no image for linux/riscv64; it has linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v6, linux/s390x, windows/amd64',
    ],
  ];

  it.each(failures)('in %s finds nothing for %j', (name, wanted, message) => {
    expect(() => selectPlatform(index(name), wanted, 'example/app:1')).toThrow(new ManifestError(message));
  });

  it('says so when an index has only attestations', () => {
    const onlyAttestations: ImageIndex = {
      schemaVersion: 2,
      manifests: index('index-oci-multiarch').manifests.filter(isAttestation),
    };
    expect(() => selectPlatform(onlyAttestations, { os: 'linux', architecture: 'amd64' }, 'x')).toThrow(
      'x has no image for linux/amd64; its index lists no platforms',
    );
  });
});

describe('isAttestation', () => {
  it.each([
    [{ platform: { os: 'unknown', architecture: 'unknown' } }, true],
    [{ annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } }, true],
    [{ platform: { os: 'linux', architecture: 'amd64' } }, false],
    [
      {
        platform: { os: 'linux', architecture: 'amd64' },
        annotations: { 'org.opencontainers.image.ref.name': '1' },
      },
      false,
    ],
  ])('%j is %s', (fields, expected) => {
    expect(isAttestation({ mediaType: MediaType.OciManifest, digest: digest('0'), size: 1, ...fields })).toBe(
      expected,
    );
  });
});

describe('normalizePlatform', () => {
  it.each([
    [{ os: 'linux', architecture: 'x86_64' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'amd64', variant: 'v1' }, 'linux/amd64'],
    [{ os: 'Linux', architecture: 'aarch64' }, 'linux/arm64/v8'],
    [{ os: 'linux', architecture: 'arm64', variant: '8' }, 'linux/arm64/v8'],
    [{ os: 'linux', architecture: 'armhf' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'armel' }, 'linux/arm/v6'],
    [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'i686' }, 'linux/386'],
    [{ os: 'macos', architecture: 'arm64' }, 'darwin/arm64/v8'],
    [{ os: 'linux', architecture: 'ppc64le' }, 'linux/ppc64le'],
  ])('%j is %s', (platform, expected) => {
    expect(formatPlatform(normalizePlatform(platform))).toBe(expected);
  });
});

describe('parseManifest', () => {
  it.each([
    ['index-oci-multiarch', MediaType.OciIndex, 'index', MediaType.OciIndex],
    ['manifest-list-docker', MediaType.DockerManifestList, 'index', MediaType.DockerManifestList],
    ['manifest-oci', MediaType.OciManifest, 'image', MediaType.OciManifest],
    ['manifest-docker', MediaType.DockerManifest, 'image', MediaType.DockerManifest],
    // served with a generic type: the body's mediaType decides
    ['manifest-docker', 'application/json', 'image', MediaType.DockerManifest],
    [
      'manifest-oci',
      'application/vnd.oci.image.manifest.v1+json; charset=utf-8',
      'image',
      MediaType.OciManifest,
    ],
    ['index-oci-multiarch', null, 'index', MediaType.OciIndex],
  ])('reads %s served as %s', (name, contentType, kind, mediaType) => {
    const parsed = parseManifest(fixture(name), contentType, 'example/app:1');
    expect(parsed.kind).toBe(kind);
    expect(parsed.mediaType).toBe(mediaType);
  });

  it('infers the type of a body without mediaType from its shape', () => {
    const body = JSON.parse(fixture('manifest-oci').toString('utf8')) as Record<string, unknown>;
    delete body.mediaType;
    const parsed = parseManifest(Buffer.from(JSON.stringify(body)), 'application/json', 'x');
    expect(parsed).toMatchObject({ kind: 'image', mediaType: MediaType.OciManifest });
  });

  it.each([[MediaType.DockerManifestV1Signed], [MediaType.DockerManifestV1], ['application/json']])(
    'refuses schema 1 served as %s',
    (contentType) => {
      expect(() =>
        parseManifest(fixture('manifest-schema1'), contentType, 'docker.io/library/old:latest'),
      ).toThrow(
        /^docker\.io\/library\/old:latest uses the Docker image manifest schema 1 \(application\/vnd\.docker\.distribution\.manifest\.v1\+(json|prettyjws)\), which is deprecated and not supported/,
      );
    },
  );

  it('refuses an artifact that is not a container image', () => {
    expect(() =>
      parseManifest(fixture('manifest-helm-chart'), MediaType.OciManifest, 'charts/app:1'),
    ).toThrow(
      'charts/app:1 is not a container image: its config has media type application/vnd.cncf.helm.config.v1+json',
    );
  });

  it.each([
    ['not json', MediaType.OciManifest, /is not valid JSON/],
    ['[]', MediaType.OciManifest, /lacks "config" or "layers"/],
    [
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}',
      null,
      /has no "manifests" list/,
    ],
    ['{"schemaVersion":2}', 'text/html', /has media type text\/html, which is not a container image/],
  ])('refuses %s', (body, contentType, message) => {
    expect(() => parseManifest(Buffer.from(body), contentType, 'x')).toThrow(message);
  });
});
