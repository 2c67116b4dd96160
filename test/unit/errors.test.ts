import { errorKind, HyperError, type ErrorKind } from '../../src/errors.js';
import { DamagedStateError } from '../../src/files.js';
import { GuestBundleError } from '../../src/guest/bundle.js';
import { GuestConfigError, normalizeSignal } from '../../src/guest/config.js';
import { LayerError } from '../../src/images/layers.js';
import { OciLayoutError, readOciLayout } from '../../src/images/oci-layout.js';
import { ImageReferenceError, parseImageReference } from '../../src/images/reference.js';
import { RegistryAuthError, tokenRequestUrl } from '../../src/images/registry/auth.js';
import { RegistryError } from '../../src/images/registry/errors.js';
import { ManifestError, parseManifest, selectPlatform } from '../../src/images/registry/manifest.js';
import { withRetry } from '../../src/images/registry/retry.js';
import { RootfsError } from '../../src/images/rootfs.js';
import { BlobVerificationError } from '../../src/images/store.js';
import { UserSpecError } from '../../src/images/users.js';
import { AccelError, parseAccelChoice } from '../../src/install/accel.js';
import { MissingToolsError } from '../../src/install/tools.js';
import { CidrError, parseCidr } from '../../src/network/cidr.js';
import { checkAliases, checkSubnet } from '../../src/network/plan.js';
import { parsePortSpec, PortSpecError } from '../../src/network/ports.js';
import { NetworkError, networkSettings } from '../../src/network/settings.js';
import { CommandError, run } from '../../src/process/run.js';
import { SizeError, wholeMiB } from '../../src/sizes.js';
import { MountError, parseVolume } from '../../src/storage/mounts.js';
import { checkMountSources, defaultVolumeSize } from '../../src/storage/volumes.js';
import { parseImageInfo, QemuOutputError } from '../../src/tools/qemu/img.js';
import type { ImageIndex } from '../../src/types/oci/index.js';
import { VmError } from '../../src/vm/qemu/machine.js';

/** The error `make` throws or rejects with, or the error it returns. */
async function caught(make: () => unknown): Promise<unknown> {
  try {
    return await make();
  } catch (error: unknown) {
    return error;
  }
}

const NAMES = { mode: '--network', egress: '--egress', allow: '--egress-allow', subnet: '--subnet' };
const SIZE_RULE = { minMiB: 64, unit: 'm', notASize: 'is not a size' } as const;
const arm64Only: ImageIndex = {
  schemaVersion: 2,
  manifests: [
    {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${'a'.repeat(64)}`,
      size: 1,
      platform: { os: 'linux', architecture: 'arm64' },
    },
  ],
};
const net10 = parseCidr('10.0.0.0/8');

test.each<[string, () => unknown, abstract new (...args: never[]) => Error, ErrorKind]>([
  // process
  [
    'a command that exits non-zero',
    () => new CommandError({ program: 'x', args: [] }, 1, ''),
    CommandError,
    'Internal',
  ],
  [
    'a program that is not there',
    () => run({ program: 'hyper-no-such-program', args: [] }),
    CommandError,
    'Unavailable',
  ],
  // shared modules
  [
    'a damaged state file',
    () => new DamagedStateError('/s/vm.json', 'it is empty', 'remove it'),
    DamagedStateError,
    'Internal',
  ],
  ['a size that is not one', () => wholeMiB('lots', SIZE_RULE), SizeError, 'Invalid'],
  // images
  ['a bad image reference', () => parseImageReference('Redis'), ImageReferenceError, 'Invalid'],
  [
    'a manifest that is not JSON',
    () => parseManifest(Buffer.from('nope'), 'application/json', 'x'),
    ManifestError,
    'Invalid',
  ],
  [
    'no image for our platform',
    () => selectPlatform(arm64Only, { os: 'linux', architecture: 'amd64' }, 'x'),
    ManifestError,
    'NotFound',
  ],
  [
    'a registry that cannot be reached',
    () => new RegistryError('cannot reach registry r', { retryable: true }),
    RegistryError,
    'Unavailable',
  ],
  [
    'a manifest the registry does not have',
    () => new RegistryError('manifest for x not found', { status: 404, kind: 'NotFound' }),
    RegistryError,
    'NotFound',
  ],
  [
    'a Bearer challenge without a realm',
    () => tokenRequestUrl({ scheme: 'bearer', params: {} }, 'repository:x:pull'),
    RegistryAuthError,
    'Unavailable',
  ],
  [
    'refused credentials',
    () => new RegistryAuthError('authentication failed for r'),
    RegistryAuthError,
    'Invalid',
  ],
  [
    'an OCI layout that is not there',
    () => readOciLayout('oci:/nonexistent/hyper-layout'),
    OciLayoutError,
    'NotFound',
  ],
  ['an OCI reference without a directory', () => readOciLayout('oci:'), OciLayoutError, 'Invalid'],
  ['a layer that cannot be applied', () => new LayerError('sha256:1', 'etc', 'boom'), LayerError, 'Internal'],
  [
    'a blob with the wrong digest',
    () => new BlobVerificationError('sha256:1', 'its content differs'),
    BlobVerificationError,
    'Internal',
  ],
  ['a root filesystem that cannot be built', () => new RootfsError('mkfs failed'), RootfsError, 'Internal'],
  ['a user the image lacks', () => new UserSpecError('unable to find user "x"'), UserSpecError, 'Invalid'],
  // install, tools, guest, vm
  ['a misspelt accelerator', () => parseAccelChoice('kmv', 'HYPER_ACCEL'), AccelError, 'Invalid'],
  ['KVM that does not work', () => new AccelError('KVM does not work here'), AccelError, 'Unavailable'],
  [
    'host tools that cannot be installed',
    () => new MissingToolsError('missing host tools: nft'),
    MissingToolsError,
    'Unavailable',
  ],
  ['qemu-img output that is not JSON', () => parseImageInfo('oops'), QemuOutputError, 'Internal'],
  ['a bad signal name', () => normalizeSignal('SIG-TERM!'), GuestConfigError, 'Invalid'],
  [
    'a bundle from another recipe',
    () => new GuestBundleError('built from recipe a, not b'),
    GuestBundleError,
    'Internal',
  ],
  ['a VM that did not boot', () => new VmError('QEMU exited at start'), VmError, 'Internal'],
  // network, storage
  ['a bad port mapping', () => parsePortSpec('54x2'), PortSpecError, 'Invalid'],
  ['a bad CIDR', () => parseCidr('10.0.0.1/33'), CidrError, 'Invalid'],
  ['a bad alias', () => checkAliases([{ service: 'db', aliases: ['no way'] }]), NetworkError, 'Invalid'],
  [
    'a subnet in use on the host',
    () => checkSubnet(parseCidr('10.1.0.0/24'), [{ device: 'eth0', cidr: net10, text: '10.0.0.0/8' }]),
    NetworkError,
    'Conflict',
  ],
  ['a bad mount string', () => parseVolume('a:/b:c:d', '/work'), MountError, 'Invalid'],
  [
    'a host path that is not there',
    () =>
      checkMountSources([
        { kind: 'bind', source: '/nonexistent/hyper-src', target: '/data', readOnly: false },
      ]),
    MountError,
    'NotFound',
  ],
])('%s is %s', async (_what, make, type, kind) => {
  const error = await caught(make);
  expect(error).toBeInstanceOf(type);
  expect(error).toBeInstanceOf(HyperError);
  expect(errorKind(error)).toBe(kind);
});

test.each([
  [
    'a subnet that is not a CIDR',
    () => networkSettings({ subnet: '10.0.0.300/24' }, NAMES),
    NetworkError,
    CidrError,
  ],
  ['a bad HYPER_VOLUME_SIZE', () => defaultVolumeSize('lots'), MountError, SizeError],
  ['qemu-img output that is not JSON', () => parseImageInfo('oops'), QemuOutputError, SyntaxError],
])('a wrapped error keeps its cause: %s', async (_what, make, type, causeType) => {
  const error = await caught(make);
  expect(error).toBeInstanceOf(type);
  expect((error as Error).cause).toBeInstanceOf(causeType);
  expect((error as Error).message).toContain(((error as Error).cause as Error).message);
});

test('a registry error that is given up on keeps its kind and its cause', async () => {
  const notFound = new RegistryError('blob x not found', { status: 404, retryable: true, kind: 'NotFound' });
  const error = await caught(() =>
    withRetry({ attempts: 1, backoffMs: () => 0 }, () => Promise.reject(notFound)),
  );
  expect(error).toBeInstanceOf(RegistryError);
  expect(errorKind(error)).toBe('NotFound');
  expect((error as Error).cause).toBe(notFound);
  expect((error as Error).message).toBe('blob x not found (gave up after 1 attempts)');
});

test('a program that is not there is Unavailable and keeps why', async () => {
  const error = await caught(() => run({ program: 'hyper-no-such-program', args: [] }));
  expect((error as CommandError).end.startError).toBe('ENOENT');
  expect((error as Error).cause).toBeDefined();
});

test('a throw site can set the kind and the cause; without them there is no cause', () => {
  const cause = new Error('EADDRINUSE');
  const error = new PortSpecError('host port 80 is already in use', { kind: 'Conflict', cause });
  expect(error.kind).toBe('Conflict');
  expect(error.cause).toBe(cause);
  expect(error.name).toBe('PortSpecError');
  expect('cause' in new PortSpecError('x')).toBe(false);
});

test.each([new Error('x'), new TypeError('x'), 'a string', undefined])('%p is Internal', (error) => {
  expect(errorKind(error)).toBe('Internal');
});
