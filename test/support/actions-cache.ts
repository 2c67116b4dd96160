/**
 * A stand-in for GitHub's Actions cache and artifact services, on 127.0.0.1. It is a fake:
 * the real service exists only inside GitHub's infrastructure. It speaks the
 * protocol @actions/cache uses when the runner sets ACTIONS_CACHE_SERVICE_V2:
 * twirp JSON calls under /twirp/github.actions.results.api.v1.CacheService/,
 * uploads to the signed URL through the Azure blob protocol (one PUT, or
 * staged blocks and a block list), and downloads with a plain GET. Lookups
 * follow GitHub's documented rules: the version must match; the key exactly,
 * then each restore key as a prefix, newest entry first. Artifacts
 * (@actions/artifact) go the same way: twirp CreateArtifact, an Azure blob
 * upload, FinalizeArtifact; the runtime token is a JWT whose scp claim names
 * the run and job, as the runner's is (unsigned here: nothing verifies it).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const SERVICE = '/twirp/github.actions.results.api.v1.CacheService/';
const ARTIFACTS = '/twirp/github.actions.results.api.v1.ArtifactService/';
const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const TOKEN = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({
  scp: 'Actions.ExampleScope Actions.Results:run-backend-1:job-backend-1',
})}.unsigned`;

export interface FakeArtifact {
  name: string;
  body?: Buffer;
  blocks: Map<string, Buffer>;
  finalized: boolean;
}

interface Entry {
  key: string;
  version: string;
  blocks: Map<string, Buffer>;
  body?: Buffer;
  finalized: boolean;
  createdAt: number;
}

export interface FakeActionsCache {
  /** Env a runner gives a step for this service. */
  env: Record<string, string>;
  /** Finalized entries, oldest first. */
  keys(): string[];
  size(key: string): number | undefined;
  /** Flips one byte of a stored entry (for corrupt-download tests). */
  corrupt(key: string, offset: number): void;
  /** Counts of twirp calls by method. */
  calls: Record<string, number>;
  /** Finalized artifacts, in upload order. */
  artifacts(): { name: string; body: Buffer }[];
  stop(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function json(response: ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(value));
}

export async function startFakeActionsCache(): Promise<FakeActionsCache> {
  const entries: Entry[] = [];
  const artifacts: FakeArtifact[] = [];
  const calls: Record<string, number> = {};
  let base = '';
  let sequence = 0;

  const find = (key: string, restoreKeys: string[], version: string): Entry | undefined => {
    const ready = entries.filter((e) => e.finalized && e.version === version).reverse();
    return (
      ready.find((e) => e.key === key) ??
      restoreKeys.map((prefix) => ready.find((e) => e.key.startsWith(prefix))).find(Boolean)
    );
  };

  const twirp = async (method: string, body: Record<string, unknown>, response: ServerResponse) => {
    calls[method] = (calls[method] ?? 0) + 1;
    const key = String(body.key ?? '');
    const version = String(body.version ?? '');
    switch (method) {
      case 'GetCacheEntryDownloadURL': {
        const restoreKeys = (body.restoreKeys ?? body.restore_keys ?? []) as string[];
        const entry = find(key, restoreKeys, version);
        if (!entry) return json(response, 200, { ok: false });
        return json(response, 200, {
          ok: true,
          signedDownloadUrl: `${base}/blob/${entries.indexOf(entry)}?sig=download`,
          matchedKey: entry.key,
        });
      }
      case 'CreateCacheEntry': {
        if (entries.some((e) => e.key === key && e.version === version)) {
          return json(response, 409, { code: 'already_exists', msg: 'cache entry with the same key exists' });
        }
        entries.push({ key, version, blocks: new Map(), finalized: false, createdAt: sequence++ });
        return json(response, 200, {
          ok: true,
          signedUploadUrl: `${base}/devstoreaccount1/cache/${entries.length - 1}?sig=upload`,
        });
      }
      case 'FinalizeCacheEntryUpload': {
        const entry = entries.find((e) => e.key === key && e.version === version && !e.finalized);
        if (!entry?.body || entry.body.length !== Number(body.sizeBytes ?? body.size_bytes)) {
          return json(response, 200, { ok: false, message: 'upload incomplete' });
        }
        entry.finalized = true;
        return json(response, 200, { ok: true, entryId: String(entries.indexOf(entry) + 1) });
      }
      default:
        return json(response, 404, { code: 'bad_route', msg: `no method ${method}` });
    }
  };

  const artifactTwirp = (method: string, body: Record<string, unknown>, response: ServerResponse) => {
    calls[method] = (calls[method] ?? 0) + 1;
    const name = String(body.name ?? '');
    // protobuf JSON: the client sends proto field names (snake_case).
    if (
      body.workflow_run_backend_id !== 'run-backend-1' ||
      body.workflow_job_run_backend_id !== 'job-backend-1'
    ) {
      return json(response, 400, { code: 'invalid_argument', msg: 'unknown run or job' });
    }
    switch (method) {
      case 'CreateArtifact': {
        if (artifacts.some((a) => a.name === name)) {
          return json(response, 409, { code: 'already_exists', msg: 'an artifact with this name exists' });
        }
        artifacts.push({ name, blocks: new Map(), finalized: false });
        return json(response, 200, {
          ok: true,
          signed_upload_url: `${base}/devstoreaccount1/artifacts/${artifacts.length - 1}?sig=upload`,
        });
      }
      case 'FinalizeArtifact': {
        const artifact = artifacts.find((a) => a.name === name && !a.finalized);
        if (!artifact?.body || artifact.body.length !== Number(body.size)) {
          return json(response, 200, { ok: false });
        }
        artifact.finalized = true;
        return json(response, 200, { ok: true, artifact_id: String(artifacts.indexOf(artifact) + 1) });
      }
      default:
        return json(response, 404, { code: 'bad_route', msg: `no method ${method}` });
    }
  };

  const upload = (
    entry: Pick<Entry, 'blocks' | 'body'>,
    url: URL,
    body: Buffer,
    request: IncomingMessage,
    response: ServerResponse,
  ) => {
    const headers = { etag: '"0x1"', 'last-modified': new Date().toUTCString(), 'x-ms-request-id': 'fake' };
    const comp = url.searchParams.get('comp');
    if (comp === 'block') {
      entry.blocks.set(url.searchParams.get('blockid') ?? '', body);
    } else if (comp === 'blocklist') {
      const ids = [...body.toString('utf8').matchAll(/<(?:Latest|Uncommitted|Committed)>([^<]*)</g)].map(
        (m) => m[1] as string,
      );
      entry.body = Buffer.concat(ids.map((id) => entry.blocks.get(id) ?? Buffer.alloc(0)));
    } else if (request.headers['x-ms-blob-type'] === 'BlockBlob') {
      entry.body = body;
    } else {
      response.writeHead(400);
      return response.end('unsupported upload');
    }
    response.writeHead(201, headers);
    response.end();
  };

  const server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', base);
      const body = await readBody(request);
      if (url.pathname.startsWith(SERVICE) && request.method === 'POST') {
        if (request.headers.authorization !== `Bearer ${TOKEN}`)
          return json(response, 401, { code: 'unauthenticated' });
        return twirp(url.pathname.slice(SERVICE.length), JSON.parse(body.toString('utf8') || '{}'), response);
      }
      if (url.pathname.startsWith(ARTIFACTS) && request.method === 'POST') {
        if (request.headers.authorization !== `Bearer ${TOKEN}`)
          return json(response, 401, { code: 'unauthenticated' });
        const method = url.pathname.slice(ARTIFACTS.length);
        return artifactTwirp(method, JSON.parse(body.toString('utf8') || '{}'), response);
      }
      const artifactUpload = /^\/devstoreaccount1\/artifacts\/(\d+)$/.exec(url.pathname);
      if (artifactUpload && request.method === 'PUT') {
        const artifact = artifacts[Number(artifactUpload[1])];
        if (!artifact || artifact.finalized) return json(response, 404, {});
        return upload(artifact, url, body, request, response);
      }
      const upload_ = /^\/devstoreaccount1\/cache\/(\d+)$/.exec(url.pathname);
      if (upload_ && request.method === 'PUT') {
        const entry = entries[Number(upload_[1])];
        if (!entry || entry.finalized) return json(response, 404, {});
        return upload(entry, url, body, request, response);
      }
      const download = /^\/blob\/(\d+)$/.exec(url.pathname);
      if (download && request.method === 'GET') {
        const entry = entries[Number(download[1])];
        if (!entry?.finalized || !entry.body) return json(response, 404, {});
        response.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': String(entry.body.length),
        });
        return response.end(entry.body);
      }
      json(response, 404, { code: 'not_found' });
    })().catch((error: unknown) => {
      response.writeHead(500);
      response.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const byKey = (key: string) => entries.find((e) => e.finalized && e.key === key);
  return {
    env: {
      ACTIONS_CACHE_SERVICE_V2: 'true',
      ACTIONS_RESULTS_URL: `${base}/`,
      ACTIONS_RUNTIME_TOKEN: TOKEN,
    },
    keys: () => entries.filter((e) => e.finalized).map((e) => e.key),
    size: (key) => byKey(key)?.body?.length,
    corrupt: (key, offset) => {
      const body = byKey(key)?.body;
      if (body) body[offset] = (body[offset] ?? 0) ^ 0xff;
    },
    calls,
    artifacts: () =>
      artifacts.filter((a) => a.finalized && a.body).map((a) => ({ name: a.name, body: a.body as Buffer })),
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
