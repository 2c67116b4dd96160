import {
  formatReference,
  ImageReferenceError,
  parseImageReference,
  registryApiHost,
  type ImageReference,
} from '../../../src/images/reference.js';

const SHA256 = 'sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c';
const SHA256_F = `sha256:${'f'.repeat(64)}`;
const SHA512_F = `sha512:${'f'.repeat(128)}`;
const HEX64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';

type Parsed = Omit<ImageReference, 'original'>;
const at = (registry: string, repository: string, tag = 'latest'): Parsed => ({ registry, repository, tag });
const hub = (repository: string, tag = 'latest'): Parsed => at('docker.io', repository, tag);
const atDigest = (registry: string, repository: string, digest: string, tag?: string): Parsed => ({
  registry,
  repository,
  tag,
  digest,
});
const hubDigest = (repository: string, digest: string, tag?: string): Parsed =>
  atDigest('docker.io', repository, digest, tag);

// Cases follow the behaviour of distribution/reference's ParseNormalizedNamed (+ TagNameOnly).
const valid: [input: string, expected: Parsed][] = [
  // Docker Hub: default registry, "library/" for one-component names, default tag
  ['redis', hub('library/redis')],
  ['redis:7', hub('library/redis', '7')],
  ['redis:7.2.4-alpine3.19', hub('library/redis', '7.2.4-alpine3.19')],
  ['lowercase:Uppercase', hub('library/lowercase', 'Uppercase')],
  ['library/debian', hub('library/debian')],
  ['docker/docker', hub('docker/docker')],
  ['dmcgowan/myapp:latest', hub('dmcgowan/myapp')],
  ['library/foo/bar', hub('library/foo/bar')],
  ['store/foo/bar', hub('store/foo/bar')],
  ['docker.io/debian', hub('library/debian')],
  ['docker.io/library/redis:latest', hub('library/redis')],
  ['docker.io/docker/docker', hub('docker/docker')],
  ['index.docker.io/debian', hub('library/debian')],
  ['index.docker.io/docker/docker', hub('docker/docker')],
  ['index.docker.io/library/ubuntu-12.04-base', hub('library/ubuntu-12.04-base')],
  // a first component without ".", ":" and not "localhost" is a namespace, not a registry
  ['test_com/foo', hub('test_com/foo')],
  ['foo/foo_bar.com:8080', hub('foo/foo_bar.com', '8080')],
  ['foo_bar.com:8080', hub('library/foo_bar.com', '8080')],
  ['test.com:5000', hub('library/test.com', '5000')],
  ['192.168.1.1', hub('library/192.168.1.1')],
  ['192.168.1.1:5000', hub('library/192.168.1.1', '5000')],
  ['localhost', hub('library/localhost')],
  // separators and lengths
  ['docker-rules/docker', hub('docker-rules/docker')],
  ['docker---rules/docker', hub('docker---rules/docker')],
  ['dock__er/docker', hub('dock__er/docker')],
  ['d/docker', hub('d/docker')],
  ['jess/t', hub('jess/t')],
  [
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    hub('library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev'),
  ],
  // 64 hex digits are an image ID, unless a registry makes them a name
  [`docker.io/${HEX64}`, hub(`library/${HEX64}`)],
  // digests, with and without a tag
  [`redis@${SHA256}`, hubDigest('library/redis', SHA256)],
  [`busybox:latest@${SHA256}`, hubDigest('library/busybox', SHA256, 'latest')],
  [`docker.io/dmcgowan/myapp@${SHA256}`, hubDigest('dmcgowan/myapp', SHA256)],
  // other registries: host with "." or ":port", localhost, IPv4, bracketed IPv6
  ['localhost/foo', at('localhost', 'foo')],
  ['localhost:5000/foo/bar:1.0', at('localhost:5000', 'foo/bar', '1.0')],
  ['127.0.0.1:5000/docker/docker', at('127.0.0.1:5000', 'docker/docker')],
  ['127.0.0.1:5000/debian', at('127.0.0.1:5000', 'debian')],
  ['192.168.1.1/repo', at('192.168.1.1', 'repo')],
  ['192.168.1.1:5000/repo:5050', at('192.168.1.1:5000', 'repo', '5050')],
  ['test.com/foo', at('test.com', 'foo')],
  ['test:5000/repo', at('test:5000', 'repo')],
  ['test-com:8080/foo', at('test-com:8080', 'foo')],
  [`test:5000/repo@${SHA256_F}`, atDigest('test:5000', 'repo', SHA256_F)],
  [`test:5000/repo:tag@${SHA256_F}`, atDigest('test:5000', 'repo', SHA256_F, 'tag')],
  ['example.com:8000/private/moonbase', at('example.com:8000', 'private/moonbase')],
  ['sub-dom1.foo.com/bar/baz/quux:some-long-tag', at('sub-dom1.foo.com', 'bar/baz/quux', 'some-long-tag')],
  [
    'b.gcr.io/test.example.com/my-app:test.example.com',
    at('b.gcr.io', 'test.example.com/my-app', 'test.example.com'),
  ],
  ['xn--n3h.com:18080/foo', at('xn--n3h.com:18080', 'foo')],
  [
    `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512_F}`,
    atDigest('xn--7o8h.com', 'myimage', SHA512_F, 'xn--7o8h.com'),
  ],
  ['ghcr.io/actions/runner:2.311.0', at('ghcr.io', 'actions/runner', '2.311.0')],
  ['[2001:db8::1]/repo', at('[2001:db8::1]', 'repo')],
  ['[2001:db8:1:2:3:4:5:6]/repo:tag', at('[2001:db8:1:2:3:4:5:6]', 'repo', 'tag')],
  ['[2001:db8::1]:5000/repo:tag', at('[2001:db8::1]:5000', 'repo', 'tag')],
  ['[::1]:5000/repo', at('[::1]:5000', 'repo')],
  // the whole name (registry included) may have 255 characters
  [`localhost/${'a'.repeat(245)}`, at('localhost', 'a'.repeat(245))],
];

describe('parseImageReference', () => {
  it.each(valid)('parses %s', (input, expected) => {
    expect(parseImageReference(input)).toEqual({ ...expected, original: input });
  });

  const invalid: [input: string, reason: RegExp][] = [
    ['', /it is empty/],
    ['Redis:7', /repository names must be lowercase/],
    ['docker/Docker', /must be lowercase/],
    ['docker.io/docker/Docker', /must be lowercase/],
    ['test:5000/Uppercase/lowercase:tag', /must be lowercase/],
    ['Uppercase:tag', /must be lowercase/],
    [HEX64, /image ID, not a repository name/],
    ['https://github.com/docker/docker', /no URL scheme/],
    ['-docker', /components must be lowercase letters and digits/],
    ['-docker/docker', /components must be/],
    ['docker-/docker', /components must be/],
    ['-docker-/docker', /components must be/],
    ['____/____', /components must be/],
    ['_docker/_docker', /components must be/],
    ['dock..er/docker', /registry "dock..er" is not a valid host\[:port\]/],
    ['dock_.er/docker', /registry "dock_.er" is not a valid host/],
    ['dock-.er/docker', /registry "dock-.er" is not a valid host/],
    ['aa/asdf$$^/aa', /components must be/],
    ['docker///docker', /empty component/],
    ['docker.io/docker///docker', /empty component/],
    ['docker/', /empty component/],
    [':justtag', /empty component/],
    [`@${SHA256_F}`, /empty component|invalid reference format/],
    ['-docker.io/docker/docker', /registry "-docker.io" is not a valid host/],
    ['[fe80::1%eth0]:5000/repo', /registry "\[fe80::1%eth0\]:5000" is not a valid host/],
    ['[2001:db8::1]:5000', /invalid reference format|components must be/],
    ['redis:-tag', /tag "-tag" is not valid/],
    [`redis:${'a'.repeat(129)}`, /is not valid: up to 128/],
    [
      'repo@sha256:ffffffffffffffffffffffffffffffffff',
      /sha256 digests have 64 hexadecimal digits, this one has 34/,
    ],
    [`validname@invaliddigest:${'f'.repeat(64)}`, /unsupported digest algorithm "invaliddigest"/],
    [`redis@sha256:${'F'.repeat(64)}`, /lowercase hexadecimal/],
    ['redis@sha256:xyz', /digest "sha256:xyz" is not valid/],
    [`localhost/${'a'.repeat(246)}`, /256 characters long; at most 255/],
    [`${'a/'.repeat(127)}a:tag-puts-this-over-max`, /at most 255 are allowed/],
    [
      'this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker',
      /at most 255 are allowed/,
    ],
  ];

  it.each(invalid)('rejects %j', (input, reason) => {
    let caught: unknown;
    try {
      parseImageReference(input);
    } catch (error: unknown) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ImageReferenceError);
    expect((caught as Error).message).toMatch(reason);
    expect(
      (caught as Error).message.startsWith(`${JSON.stringify(input)} is not a valid image reference: `),
    ).toBe(true);
  });

  it('says exactly what is wrong with an uppercase name', () => {
    expect(() => parseImageReference('Redis:7')).toThrow(
      '"Redis:7" is not a valid image reference: repository names must be lowercase',
    );
  });
});

describe('formatReference', () => {
  it.each([
    ['redis', 'docker.io/library/redis:latest', 'redis:latest'],
    ['redis:7', 'docker.io/library/redis:7', 'redis:7'],
    ['bitnami/redis:7', 'docker.io/bitnami/redis:7', 'bitnami/redis:7'],
    ['library/foo/bar', 'docker.io/library/foo/bar:latest', 'library/foo/bar:latest'],
    [`redis@${SHA256}`, `docker.io/library/redis@${SHA256}`, `redis@${SHA256}`],
    [`busybox:1@${SHA256}`, `docker.io/library/busybox:1@${SHA256}`, `busybox:1@${SHA256}`],
    ['localhost:5000/nope', 'localhost:5000/nope:latest', 'localhost:5000/nope:latest'],
    ['ghcr.io/a/b:c', 'ghcr.io/a/b:c', 'ghcr.io/a/b:c'],
  ])('formats %s', (input, full, familiar) => {
    const ref = parseImageReference(input);
    expect(formatReference(ref)).toBe(full);
    expect(formatReference(ref, { familiar: true })).toBe(familiar);
    expect(parseImageReference(formatReference(ref))).toEqual({ ...ref, original: full });
  });
});

describe('registryApiHost', () => {
  it.each([
    ['redis', undefined, 'registry-1.docker.io'],
    ['docker.io/bitnami/redis', undefined, 'registry-1.docker.io'],
    ['redis', 'https://mirror.gcr.io', 'mirror.gcr.io'],
    ['redis', 'http://127.0.0.1:5000/', '127.0.0.1:5000'],
    ['redis', 'mirror.internal:5000', 'mirror.internal:5000'],
    ['ghcr.io/a/b', 'https://mirror.gcr.io', 'ghcr.io'],
    ['localhost:5000/a', 'https://mirror.gcr.io', 'localhost:5000'],
  ])('%s with mirror %s is served by %s', (input, mirror, host) => {
    expect(registryApiHost(parseImageReference(input), { mirror })).toBe(host);
  });
});
