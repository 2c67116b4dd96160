/**
 * Registry authentication: the `WWW-Authenticate` challenge, HTTP basic, and bearer tokens from a token
 * server (https://distribution.github.io/distribution/spec/auth/token/). Nothing here logs or throws a
 * secret: errors name the registry and the user, never the password or a token.
 */

import { type ErrorKind, HyperError, type HyperErrorOptions } from '../../errors.js';

/** Username and password, the shape of GitHub's `services.<id>.credentials`. */
export interface Credentials {
  username: string;
  password: string;
}

/** One challenge of a `WWW-Authenticate` header; `scheme` is lowercased, as are parameter names. */
export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
}

/** The token server refused the credentials, or the registry refused them or the token. */
/** Credentials missing or refused; a repository hidden behind a refusal is NotFound, as Docker says. */
export class RegistryAuthError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  constructor(message: string, options?: HyperErrorOptions) {
    super(message, options);
    this.name = 'RegistryAuthError';
  }
}

/**
 * Parses `WWW-Authenticate` (RFC 7235): one or more challenges, each a scheme followed by
 * comma-separated `name=value` or `name="quoted value"` parameters.
 */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let current: AuthChallenge | undefined;
  let pos = 0;

  const skip = (pattern: RegExp): void => {
    while (pos < header.length && pattern.test(header.charAt(pos))) pos++;
  };
  const readToken = (): string => {
    const start = pos;
    while (pos < header.length && !/[\s,="]/.test(header.charAt(pos))) pos++;
    return header.slice(start, pos);
  };
  const readQuoted = (): string => {
    let value = '';
    pos++; // opening quote
    while (pos < header.length && header.charAt(pos) !== '"') {
      if (header.charAt(pos) === '\\' && pos + 1 < header.length) pos++;
      value += header.charAt(pos);
      pos++;
    }
    pos++; // closing quote
    return value;
  };

  while (pos < header.length) {
    skip(/[\s,]/);
    if (pos >= header.length) break;
    const token = readToken();
    skip(/\s/);
    if (header.charAt(pos) === '=' && current && token !== '') {
      pos++;
      skip(/\s/);
      const value = header.charAt(pos) === '"' ? readQuoted() : readToken();
      current.params[token.toLowerCase()] = value;
    } else if (token !== '') {
      current = { scheme: token.toLowerCase(), params: {} };
      challenges.push(current);
    } else {
      pos++; // a stray "=" or quote: step over it rather than loop forever
    }
  }
  return challenges;
}

export function basicAuthorization(credentials: Credentials): string {
  const encoded = Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64');
  return `Basic ${encoded}`;
}

/** A copy of `headers` fit for a log line: credentials in `Authorization` are replaced. */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const redacted: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const secret = /^(authorization|proxy-authorization|cookie)$/i.test(name);
    redacted[name] = secret ? `${value.split(' ')[0] ?? ''} <redacted>`.trim() : value;
  }
  return redacted;
}

export interface BearerToken {
  token: string;
  /** Seconds the token is valid for; the spec's default is 60. */
  expiresIn: number;
}

/** Reads a token server's answer: `token`, or OAuth2's `access_token`, plus `expires_in`. */
export function parseTokenResponse(body: unknown): BearerToken | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const fields = body as Record<string, unknown>;
  const token = [fields.token, fields.access_token].find(
    (value) => typeof value === 'string' && value !== '',
  );
  if (typeof token !== 'string') return undefined;
  const expiresIn =
    typeof fields.expires_in === 'number' && fields.expires_in > 0
      ? fields.expires_in
      : DEFAULT_TOKEN_LIFETIME_S;
  return { token, expiresIn };
}

const DEFAULT_TOKEN_LIFETIME_S = 60;
/** A token is used only while this much of its life is left, so it does not expire in flight. */
const EXPIRY_MARGIN_S = 10;

/**
 * Bearer tokens by realm, service, scope and user. Concurrent requests for the same scope share
 * one token request.
 */
export class TokenCache {
  private readonly entries = new Map<string, { token: Promise<string>; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  static key(challenge: AuthChallenge, scope: string, credentials?: Credentials): string {
    return [
      challenge.params.realm ?? '',
      challenge.params.service ?? '',
      scope,
      credentials?.username ?? '',
    ].join('\n');
  }

  async get(key: string, fetchToken: () => Promise<BearerToken>): Promise<string> {
    const cached = this.entries.get(key);
    if (cached && cached.expiresAt > this.now()) return cached.token;

    const entry = { token: Promise.resolve(''), expiresAt: Number.POSITIVE_INFINITY };
    entry.token = fetchToken().then(
      ({ token, expiresIn }) => {
        entry.expiresAt = this.now() + Math.max(expiresIn - EXPIRY_MARGIN_S, 1) * 1000;
        return token;
      },
      (error: unknown) => {
        this.entries.delete(key);
        throw error;
      },
    );
    this.entries.set(key, entry);
    return entry.token;
  }

  invalidate(key: string): void {
    this.entries.delete(key);
  }
}

/** The query a token request sends to the realm: service, scope, and the account when known. */
export function tokenRequestUrl(challenge: AuthChallenge, scope: string, credentials?: Credentials): URL {
  const realm = challenge.params.realm;
  if (!realm)
    throw new RegistryAuthError('the registry sent a Bearer challenge without a realm', {
      kind: 'Unavailable',
    });
  const url = new URL(realm);
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  url.searchParams.append('scope', scope);
  if (credentials) url.searchParams.set('account', credentials.username);
  return url;
}
