import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parseImageReference } from '../../../src/images/reference.js';
import { pullImage } from '../../../src/images/registry/pull.js';
import type { RetryPolicy } from '../../../src/images/registry/retry.js';
import { ManifestError } from '../../../src/images/registry/manifest.js';
import { BlobStore, BlobVerificationError } from '../../../src/images/store.js';
import { buildTestImage, type TestImage } from '../../support/registry/image.js';
import { startFaultProxy, type FaultProxy } from '../../support/registry/proxy.js';
import { pushImage } from '../../support/registry/push.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';

// Through a proxy that breaks chosen requests, pulls must retry, resume or refuse, and the store must
// never keep a bad blob.
describe('pulling through a faulty connection', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let image: TestImage;
  let layered: TestImage;
  let layer: TestImage['layers'][number];
  let workDir: string;
  const backoffs: number[] = [];
  const retry: RetryPolicy = {
    attempts: 4,
    backoffMs: (attempt) => {
      backoffs.push(attempt);
      return 0;
    },
  };

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    // Random content does not compress: the layer stays ~2 MiB, so a cut lands mid-body.
    image = await buildTestImage({ files: { 'data/random.bin': randomBytes(2 * 1024 * 1024) } });
    layer = image.layers[0] as TestImage['layers'][number];
    await pushImage(registry, 'team/app', '1', image);
    const layerFiles = Array.from({ length: 4 }, (_, index) => ({
      [`layer${index}`]: randomBytes(512 * 1024),
    }));
    // The first layer again at the end: the same blob is fetched once.
    layered = await buildTestImage({ layers: [...layerFiles, layerFiles[0] ?? {}] });
    await pushImage(registry, 'team/layered', '1', layered);
    workDir = await mkdtemp(join(tmpdir(), 'hyper-faults-'));
  });

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  let store: BlobStore;
  let storeDir: string;
  beforeEach(async () => {
    storeDir = await mkdtemp(join(workDir, 'store-'));
    store = new BlobStore(storeDir);
    proxy.requests.length = 0;
    backoffs.length = 0;
  });
  afterEach(() => proxy.clearRules());

  const ref = () => parseImageReference(`${proxy.host}/team/app:1`);
  const layerPath = () => new RegExp(`/blobs/${layer.digest}$`);
  const blobFiles = async () => readdir(join(storeDir, 'blobs', 'sha256')).catch(() => [] as string[]);
  const hex = (digest: string) => digest.slice('sha256:'.length);

  it('refuses a corrupted blob and keeps nothing of it', async () => {
    proxy.addRule({ path: layerPath(), fault: { kind: 'corrupt', offset: 4096 }, times: Infinity });
    const error = await pullImage(ref(), store, { retry }).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(BlobVerificationError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^blob ${layer.digest} failed verification: expected ${layer.size} bytes with digest ${layer.digest}, ` +
          `got ${layer.size} bytes with digest sha256:(?!${hex(layer.digest)})[0-9a-f]{64}$`,
      ),
    );
    expect(await store.has(layer.digest)).toBe(false);
    expect(await blobFiles()).toEqual([hex(image.config.digest)]);
    expect(backoffs).toEqual([]);
  });

  it('resumes a download cut halfway with a Range request', async () => {
    const cutAt = 1024 * 1024;
    proxy.addRule({ path: layerPath(), fault: { kind: 'cut', afterBytes: cutAt }, times: 1 });
    const pulled = await pullImage(ref(), store, { retry });

    // Buffer.equals: jest's toEqual compares 2 MiB byte by byte, for seconds.
    expect((await readFile(pulled.layers[0]?.path ?? '')).equals(layer.bytes)).toBe(true);
    const layerRequests = proxy.requests.filter((request) => layerPath().test(request.path));
    expect(layerRequests).toEqual([
      {
        method: 'GET',
        path: expect.stringMatching(layerPath()),
        range: undefined,
        status: 200,
        fault: 'cut',
      },
      {
        method: 'GET',
        path: expect.stringMatching(layerPath()),
        range: expect.stringMatching(/^bytes=\d+-$/),
        status: 206,
        fault: undefined,
      },
    ]);
    // The resumed range starts where the received bytes end: past zero, at most where the proxy cut.
    const resumedFrom = Number(/\d+/.exec(layerRequests[1]?.range ?? '')?.[0]);
    expect(resumedFrom).toBeGreaterThan(0);
    expect(resumedFrom).toBeLessThanOrEqual(cutAt);
    expect(backoffs).toEqual([1]);
    expect((await blobFiles()).sort()).toEqual([hex(image.config.digest), hex(layer.digest)].sort());
  });

  it('waits out 429 and 503 answers, then succeeds', async () => {
    proxy.addRule({
      path: /\/manifests\/1$/,
      fault: { kind: 'status', status: 429, headers: { 'retry-after': '0' } },
      times: 2,
    });
    proxy.addRule({ path: layerPath(), fault: { kind: 'status', status: 503 }, times: 1 });
    const pulled = await pullImage(ref(), store, { retry });

    expect(pulled.manifestDigest).toBe(image.manifest.digest);
    expect((await readFile(pulled.layers[0]?.path ?? '')).equals(layer.bytes)).toBe(true);
    expect(proxy.requests.map((request) => request.status)).toEqual([429, 429, 200, 200, 503, 200]);
    expect(backoffs).toEqual([1, 2, 1]);
  });

  it('gives up after the last attempt, saying why', async () => {
    proxy.addRule({ path: /\/manifests\/1$/, fault: { kind: 'status', status: 429 }, times: retry.attempts });
    await expect(pullImage(ref(), store, { retry })).rejects.toThrow(
      `registry ${proxy.host} answered (TOOMANYREQUESTS: injected by the test proxy) for the manifest of ` +
        `${proxy.host}/team/app:1 (gave up after ${retry.attempts} attempts)`,
    );
  });

  it('refuses a manifest pulled by digest whose content has another digest', async () => {
    const digest = image.manifest.digest;
    proxy.addRule({
      path: new RegExp(`/manifests/${digest}$`),
      fault: { kind: 'corrupt', offset: 10 },
      times: 1,
    });
    const error = await pullImage(parseImageReference(`${proxy.host}/team/app@${digest}`), store, {
      retry,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^the manifest of ${proxy.host}/team/app@${digest} from registry ${proxy.host} failed verification: ` +
          'its content has digest sha256:[0-9a-f]{64}$',
      ),
    );
  });

  it('downloads layers in parallel, a bounded number at once, each digest once', async () => {
    // The first layer's answer waits until a second request is in flight (or 10 s pass), so a
    // first layer that ends before the second request arrives cannot make the pull look serial.
    const layerDigests = layered.layers.map((l) => l.digest).join('|');
    proxy.addRule({
      path: new RegExp(`/blobs/(${layerDigests})$`),
      fault: { kind: 'wait', inFlight: 2, timeoutMs: 10_000 },
      times: 1,
    });
    const pulled = await pullImage(parseImageReference(`${proxy.host}/team/layered:1`), store, {
      retry,
      concurrency: 2,
    });

    expect(pulled.layers.map((pulledLayer) => pulledLayer.digest)).toEqual(
      layered.layers.map((l) => l.digest),
    );
    for (const [index, pulledLayer] of pulled.layers.entries()) {
      expect((await readFile(pulledLayer.path)).equals(layered.layers[index]?.bytes ?? Buffer.alloc(0))).toBe(
        true,
      );
    }
    const blobGets = proxy.requests.filter((request) => request.path.includes('/blobs/'));
    expect(blobGets).toHaveLength(1 + 4); // config + four distinct layers
    expect(proxy.maxInFlight()).toBe(2);
  });
});
