/**
 * A token server for distribution's `auth.token` (https://distribution.github.io/distribution/spec/auth/jwt/):
 * checks basic credentials and issues RS256 JWTs with an `access` claim, signed by a key whose
 * self-signed certificate is the registry's `rootcertbundle`. Listens on 127.0.0.1 only.
 */
import { createPrivateKey, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import type { Credentials } from '../../../src/images/registry/auth.js';
import { run } from '../../../src/process/run.js';

export interface TokenServerOptions {
  /** Directory for the key and certificate (removed by whoever owns it). */
  dir: string;
  users: Credentials[];
  service: string;
  issuer: string;
  /** Field the token is sent in: the spec's `token` or OAuth2's `access_token`. */
  tokenField?: 'token' | 'access_token';
}

export interface TokenRequest {
  account?: string;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate the registry trusts (its `rootcertbundle`). */
  certificatePath: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const TOKEN_LIFETIME_S = 300;

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const keyPath = join(options.dir, 'token.key');
  const certificatePath = join(options.dir, 'token.crt');
  await run({
    program: 'openssl',
    args: [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '1',
      '-subj', '/CN=hyper-services test token issuer',
      '-keyout', keyPath, '-out', certificatePath,
    ], // prettier-ignore
  });
  const key = createPrivateKey(await readFile(keyPath));
  const chain = [new X509Certificate(await readFile(certificatePath)).raw.toString('base64')];
  const requests: TokenRequest[] = [];

  const server = createServer((request, response) => {
    const outcome = answer(request, options, key, chain);
    requests.push(outcome.record);
    respond(response, outcome.status, outcome.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    realm: `http://127.0.0.1:${port}/token`,
    service: options.service,
    issuer: options.issuer,
    certificatePath,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function answer(
  request: IncomingMessage,
  options: TokenServerOptions,
  key: KeyObject,
  chain: string[],
): { status: number; body: unknown; record: TokenRequest } {
  const url = new URL(request.url ?? '/', 'http://token.invalid');
  const scopes = url.searchParams.getAll('scope');
  const record = (status: number): TokenRequest => ({
    account: url.searchParams.get('account') ?? undefined,
    scopes,
    status,
  });
  const unauthorized = (message: string) => ({
    status: 401,
    body: { errors: [{ code: 'UNAUTHORIZED', message }] },
    record: record(401),
  });

  if (url.pathname !== '/token' || url.searchParams.get('service') !== options.service) {
    return {
      status: 400,
      body: { errors: [{ code: 'BAD_REQUEST', message: 'unknown service' }] },
      record: record(400),
    };
  }
  const presented = basicCredentials(request.headers.authorization);
  let subject = '';
  if (presented) {
    const user = options.users.find((candidate) => candidate.username === presented.username);
    if (!user || user.password !== presented.password) return unauthorized('authentication failed');
    subject = user.username;
  }

  // Anonymous callers get a token without access, as Docker Hub's token server does.
  const access = subject === '' ? [] : scopes.flatMap(parseScope);
  const token = signJwt(key, chain, {
    iss: options.issuer,
    sub: subject,
    aud: options.service,
    exp: now() + TOKEN_LIFETIME_S,
    nbf: now() - 10,
    iat: now(),
    jti: randomBytes(12).toString('hex'),
    access,
  });
  const field = options.tokenField ?? 'token';
  return {
    status: 200,
    body: { [field]: token, expires_in: TOKEN_LIFETIME_S, issued_at: new Date().toISOString() },
    record: record(200),
  };
}

/** "repository:team/app:pull,push" -> one `access` entry. */
function parseScope(scope: string): { type: string; name: string; actions: string[] }[] {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first === -1 || last === first) return [];
  return [
    {
      type: scope.slice(0, first),
      name: scope.slice(first + 1, last),
      actions: scope.slice(last + 1).split(','),
    },
  ];
}

function basicCredentials(header: string | undefined): Credentials | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Distribution 2.8 finds the signing key through the `x5c` chain, checked against its rootcertbundle. */
function signJwt(key: KeyObject, chain: string[], claims: Record<string, unknown>): string {
  const header = { typ: 'JWT', alg: 'RS256', x5c: chain };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(signingInput), key);
  return `${signingInput}.${base64url(signature)}`;
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function respond(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Basic realm="hyper-services test token server"' } : {}),
  });
  response.end(text);
}
