import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parseImageReference } from '../../../src/images/reference.js';
import { pullImage, type PullOptions } from '../../../src/images/registry/pull.js';
import type { RetryPolicy } from '../../../src/images/registry/retry.js';
import { BlobStore } from '../../../src/images/store.js';
import { buildTestImage, type TestImage } from '../../support/registry/image.js';
import { pushImage, pushIndex } from '../../support/registry/push.js';
import { startRegistry, type RegistryAuth, type TestRegistry } from '../../support/registry/registry.js';

const fastRetry: RetryPolicy = { attempts: 3, backoffMs: () => 0 };

describe.each<RegistryAuth>(['anonymous', 'htpasswd', 'token'])('pulling from a %s registry', (auth) => {
  let registry: TestRegistry;
  let storeDir: string;
  let store: BlobStore;
  let single: TestImage;
  let amd64: TestImage;
  let arm64: TestImage;
  let indexDigest: string;
  const log: string[] = [];

  const options = (extra: PullOptions = {}): PullOptions => ({
    credentials: registry.credentials,
    retry: fastRetry,
    log: (line) => log.push(line),
    ...extra,
  });

  beforeAll(async () => {
    registry = await startRegistry({ auth });
    storeDir = await mkdtemp(join(tmpdir(), 'hyper-store-'));
    store = new BlobStore(storeDir);
    single = await buildTestImage({ env: ['PATH=/bin', 'MODE=single'], cmd: ['redis-server'] });
    amd64 = await buildTestImage({ platform: { os: 'linux', architecture: 'amd64' } });
    arm64 = await buildTestImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    await pushImage(registry, 'team/app', '1', single);
    indexDigest = await pushIndex(registry, 'team/multi', '1', [amd64, arm64]);
  });

  afterAll(async () => {
    await registry?.stop();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  it('pulls a single-manifest image, verified, into the store', async () => {
    const ref = parseImageReference(`${registry.host}/team/app:1`);
    const pulled = await pullImage(ref, store, options());

    expect(pulled.manifestDigest).toBe(single.manifest.digest);
    expect(pulled.indexDigest).toBeUndefined();
    expect(pulled.configDigest).toBe(single.config.digest);
    expect(pulled.config.config?.Env).toEqual(['PATH=/bin', 'MODE=single']);
    expect(pulled.config.config?.Cmd).toEqual(['redis-server']);
    expect(pulled.layers).toEqual(
      single.layers.map((layer) => ({
        digest: layer.digest,
        mediaType: layer.mediaType,
        size: layer.size,
        path: store.path(layer.digest),
      })),
    );
    expect(await readFile(pulled.layers[0]?.path ?? '')).toEqual(single.layers[0]?.bytes);
    expect(await readFile(store.path(single.config.digest))).toEqual(single.config.bytes);
  });

  it('picks linux/amd64 from an index and skips the attestation entry', async () => {
    const pulled = await pullImage(parseImageReference(`${registry.host}/team/multi:1`), store, options());
    expect(pulled.manifestDigest).toBe(amd64.manifest.digest);
    expect(pulled.indexDigest).toBe(indexDigest);
    expect(pulled.config.architecture).toBe('amd64');
    expect(await readFile(pulled.layers[0]?.path ?? '')).toEqual(amd64.layers[0]?.bytes);
  });

  it('picks linux/arm64/v8 when asked for arm64', async () => {
    const pulled = await pullImage(
      parseImageReference(`${registry.host}/team/multi:1`),
      store,
      options({ platform: { os: 'linux', architecture: 'arm64' } }),
    );
    expect(pulled.manifestDigest).toBe(arm64.manifest.digest);
    expect(pulled.config.architecture).toBe('arm64');
  });

  it('pulls by digest, and reports progress for every blob', async () => {
    const progress = new Map<string, { bytes: number; total: number }>();
    const pulled = await pullImage(
      parseImageReference(`${registry.host}/team/app@${single.manifest.digest}`),
      store,
      options({ onProgress: (event) => progress.set(event.digest, event) }),
    );
    expect(pulled.manifestDigest).toBe(single.manifest.digest);
    expect(progress.get(single.layers[0]?.digest ?? '')).toMatchObject({
      bytes: single.layers[0]?.size,
      total: single.layers[0]?.size,
    });
  });

  it('names the reference and the registry when the tag or the repository does not exist', async () => {
    await expect(
      pullImage(parseImageReference(`${registry.host}/team/app:nope`), store, options()),
    ).rejects.toThrow(
      `manifest for ${registry.host}/team/app:nope not found on registry ${registry.host} (MANIFEST_UNKNOWN)`,
    );
    const port = registry.host.split(':')[1] ?? '';
    await expect(pullImage(parseImageReference(`localhost:${port}/nope`), store, options())).rejects.toThrow(
      new RegExp(
        `^manifest for localhost:${port}/nope:latest not found on registry localhost:${port} \\((MANIFEST|NAME)_UNKNOWN\\)$`,
      ),
    );
  });

  it('leaves no partial files and never logs a secret', async () => {
    const names = await readdir(join(storeDir, 'blobs', 'sha256'));
    expect(names.filter((name) => name.endsWith('.partial'))).toEqual([]);

    const secrets = registry.credentials
      ? [
          registry.credentials.password,
          Buffer.from(`${registry.credentials.username}:${registry.credentials.password}`).toString('base64'),
        ]
      : [];
    expect(log.length).toBeGreaterThan(0);
    for (const secret of secrets) expect(log.join('\n')).not.toContain(secret);
    if (registry.credentials) expect(log.join('\n')).toMatch(/"authorization":"(Basic|Bearer) <redacted>"/);
    expect(log.join('\n')).not.toMatch(/Bearer [A-Za-z0-9_-]{10,}/);
  });
});

describe('registry authentication failures', () => {
  let htpasswd: TestRegistry;
  let token: TestRegistry;
  let storeDir: string;
  let store: BlobStore;

  beforeAll(async () => {
    [htpasswd, token] = await Promise.all([
      startRegistry({ auth: 'htpasswd' }),
      startRegistry({ auth: 'token', tokenField: 'access_token' }),
    ]);
    storeDir = await mkdtemp(join(tmpdir(), 'hyper-store-'));
    store = new BlobStore(storeDir);
    const image = await buildTestImage();
    await pushImage(htpasswd, 'team/app', '1', image);
    await pushImage(token, 'team/app', '1', image);
  });

  afterAll(async () => {
    await Promise.all([htpasswd?.stop(), token?.stop()]);
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  const wrong = { username: 'ci', password: 'Wr0ng-Secret-Value' };

  it('says authentication failed for a basic-auth registry, without the password', async () => {
    const error = await pullImage(parseImageReference(`${htpasswd.host}/team/app:1`), store, {
      credentials: wrong,
      retry: fastRetry,
    }).then(
      () => new Error('the pull succeeded'),
      (caught: unknown) => caught as Error,
    );
    expect(error.message).toMatch(`authentication failed for ${htpasswd.host}`);
    expect(error.message).toContain('"ci"');
    expect(error.message).not.toContain(wrong.password);
    expect(error.message).not.toContain(Buffer.from(`ci:${wrong.password}`).toString('base64'));
  });

  it('says authentication failed for a token-auth registry, without the password', async () => {
    const error = await pullImage(parseImageReference(`${token.host}/team/app:1`), store, {
      credentials: wrong,
      retry: fastRetry,
    }).then(
      () => new Error('the pull succeeded'),
      (caught: unknown) => caught as Error,
    );
    expect(error.message).toMatch(`authentication failed for ${token.host}`);
    expect(error.message).not.toContain(wrong.password);
  });

  it('asks for credentials when none were given', async () => {
    await expect(
      pullImage(parseImageReference(`${htpasswd.host}/team/app:1`), store, { retry: fastRetry }),
    ).rejects.toThrow(`registry ${htpasswd.host} requires a username and password to access team/app`);
    await expect(
      pullImage(parseImageReference(`${token.host}/team/app:1`), store, { retry: fastRetry }),
    ).rejects.toThrow(
      `registry ${token.host} refused access to team/app: the repository does not exist or needs credentials`,
    );
  });

  it('reads tokens sent as access_token, and asks the token server once per pull', async () => {
    const before = token.tokenServer?.requests.length ?? 0;
    const pulled = await pullImage(parseImageReference(`${token.host}/team/app:1`), store, {
      credentials: token.credentials,
      retry: fastRetry,
    });
    expect(pulled.layers).toHaveLength(1);
    const requests = token.tokenServer?.requests.slice(before) ?? [];
    expect(requests).toEqual([{ account: 'ci', scopes: ['repository:team/app:pull'], status: 200 }]);
  });
});

describe('an index without our platform', () => {
  let registry: TestRegistry;
  let storeDir: string;

  beforeAll(async () => {
    registry = await startRegistry();
    storeDir = await mkdtemp(join(tmpdir(), 'hyper-store-'));
    const images = await Promise.all([
      buildTestImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      buildTestImage({ platform: { os: 'linux', architecture: 's390x' } }),
    ]);
    await pushIndex(registry, 'team/exotic', 'latest', images);
  });

  afterAll(async () => {
    await registry?.stop();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  it('fails listing the platforms it has', async () => {
    await expect(
      pullImage(parseImageReference(`${registry.host}/team/exotic`), new BlobStore(storeDir), {
        retry: fastRetry,
      }),
    ).rejects.toThrow(
      `${registry.host}/team/exotic:latest has no image for linux/amd64; it has linux/arm64/v8, linux/s390x`,
    );
  });
});
