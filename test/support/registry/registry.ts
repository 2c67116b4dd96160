/**
 * A real registry for integration tests: Debian's `docker-registry` (CNCF distribution 2.8) on
 * 127.0.0.1, storing into a temp dir, anonymous or behind htpasswd or token authentication.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Credentials } from '../../../src/images/registry/auth.js';
import { run } from '../../../src/process/run.js';
import { startTokenServer, type TokenServer } from './token-server.js';

export type RegistryAuth = 'anonymous' | 'htpasswd' | 'token';

export interface TestRegistryOptions {
  auth?: RegistryAuth;
  /** Accepted users for htpasswd and token auth; one test user when omitted. */
  users?: Credentials[];
  /** Where the token server puts the token: `token` (default) or `access_token`. */
  tokenField?: 'token' | 'access_token';
}

export interface TestRegistry {
  auth: RegistryAuth;
  /** "127.0.0.1:<port>": the registry part of image references. */
  host: string;
  url: string;
  /** A user the registry accepts (htpasswd and token auth). */
  credentials?: Credentials;
  tokenServer?: TokenServer;
  pid: number;
  /** Last lines the registry wrote, for failure messages. */
  output(): string;
  /** Stops the registry (by PID) and the token server, and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export const REGISTRY_PROGRAM = process.env.HYPER_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry';
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export async function startRegistry(options: TestRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'anonymous';
  const users = options.users ?? [{ username: 'ci', password: `pw-${randomBytes(8).toString('hex')}` }];
  const dir = await mkdtemp(join(tmpdir(), 'hyper-registry-'));
  let tokenServer: TokenServer | undefined;
  let child: ChildProcess | undefined;
  let output = '';

  const stop = async (): Promise<void> => {
    if (child) await stopProcess(child);
    child = undefined;
    await tokenServer?.stop();
    tokenServer = undefined;
    await rm(dir, { recursive: true, force: true });
  };

  try {
    let authSection = '';
    if (auth === 'htpasswd') {
      const lines = await Promise.all(
        users.map(async (user) => {
          const result = await run({ program: 'htpasswd', args: ['-Bbn', user.username, user.password] });
          return result.stdout.trim();
        }),
      );
      await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
      authSection = [
        'auth:',
        '  htpasswd:',
        '    realm: hyper-test',
        `    path: ${join(dir, 'htpasswd')}`,
      ].join('\n');
    } else if (auth === 'token') {
      tokenServer = await startTokenServer({
        dir,
        users,
        service: 'hyper-test-registry',
        issuer: 'hyper-test-issuer',
        tokenField: options.tokenField,
      });
      authSection = [
        'auth:',
        '  token:',
        `    realm: ${tokenServer.realm}`,
        `    service: ${tokenServer.service}`,
        `    issuer: ${tokenServer.issuer}`,
        `    rootcertbundle: ${tokenServer.certificatePath}`,
      ].join('\n');
    }

    const port = await freePort();
    const configPath = join(dir, 'config.yml');
    await writeFile(configPath, registryConfig(join(dir, 'data'), port, authSection));

    child = spawn(REGISTRY_PROGRAM, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-8192);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const started = child;
    await new Promise<void>((resolve, reject) => {
      started.once('spawn', resolve);
      started.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'ENOENT'
            ? new Error(
                `${REGISTRY_PROGRAM} not found; install it with "apt-get install -y docker-registry apache2-utils openssl" ` +
                  'or point HYPER_TEST_REGISTRY_BIN at a distribution registry binary',
              )
            : error,
        ),
      );
    });

    const host = `127.0.0.1:${port}`;
    await waitUntilReady(`http://${host}/v2/`, started, () => output);
    return {
      auth,
      host,
      url: `http://${host}`,
      credentials: auth === 'anonymous' ? undefined : users[0],
      tokenServer,
      pid: started.pid as number,
      output: () => output,
      stop,
    };
  } catch (error: unknown) {
    await stop();
    throw error;
  }
}

function registryConfig(dataDir: string, port: number, authSection: string): string {
  return `${[
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${dataDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    authSection,
  ].join('\n')}\n`;
}

/** Polls `/v2/` until the registry answers (200, or 401 when it wants credentials). */
async function waitUntilReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastSeen = 'nothing yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `docker-registry exited (${child.exitCode ?? child.signalCode}) before answering ${url}:\n${output()}`,
      );
    }
    try {
      const response = await fetch(url);
      await response.body?.cancel();
      if (response.status === 200 || response.status === 401) return;
      lastSeen = `HTTP ${response.status}`;
    } catch (error: unknown) {
      lastSeen = String((error as Error).cause ?? error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `docker-registry did not answer ${url} within ${READY_TIMEOUT_MS / 1000} s; last seen: ${lastSeen}\n${output()}`,
  );
}

/** SIGTERM by PID, SIGKILL if it lingers. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** A port free on 127.0.0.1 right now (the registry binds it a moment later). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
