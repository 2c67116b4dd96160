import {
  basicAuthorization,
  parseTokenResponse,
  parseWwwAuthenticate,
  redactHeaders,
  RegistryAuthError,
  TokenCache,
  tokenRequestUrl,
  type AuthChallenge,
  type BearerToken,
  type Credentials,
} from './auth.js';
import { networkError, parseRetryAfter, RegistryError } from './errors.js';

export interface RegistryClientOptions {
  /** host[:port] serving the registry API, e.g. "registry-1.docker.io" or "127.0.0.1:5000". */
  host: string;
  /** Repository path inside the registry, e.g. "library/redis". */
  repository: string;
  credentials?: Credentials;
  /** Registries (host[:port] or host) reached over plain HTTP; loopback always is. */
  insecureRegistries?: readonly string[];
  /** Actions a bearer token is requested for; ["pull"] unless pushing. */
  actions?: readonly string[];
  /** Shared between clients so parallel pulls of one repository fetch one token. */
  tokens?: TokenCache;
  /** Receives one line per HTTP exchange, with credentials redacted. */
  log?: (line: string) => void;
}

export interface RegistryRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

const MAX_REDIRECTS = 5;

/**
 * HTTP access to one repository of one registry: picks HTTP or HTTPS, answers the registry's
 * authentication challenge (basic or bearer token) and follows redirects, never forwarding credentials
 * to another origin. Callers map non-2xx answers to errors; only refused authentication throws here.
 */
export class RegistryClient {
  readonly host: string;
  readonly repository: string;
  readonly baseUrl: string;
  private readonly credentials?: Credentials;
  private readonly actions: readonly string[];
  private readonly tokens: TokenCache;
  private readonly log: (line: string) => void;
  /** The Authorization value that last worked, sent up front to save a 401 round trip per request. */
  private authorization?: string;

  constructor(options: RegistryClientOptions) {
    this.host = options.host;
    this.repository = options.repository;
    this.baseUrl = registryBaseUrl(options.host, options.insecureRegistries);
    this.credentials = options.credentials;
    this.actions = options.actions ?? ['pull'];
    this.tokens = options.tokens ?? new TokenCache();
    this.log = options.log ?? (() => {});
  }

  /** `target` is a path ("/v2/...") or an absolute URL such as an upload's Location. */
  async request(target: string, init: RegistryRequest = {}): Promise<Response> {
    const url = new URL(target, this.baseUrl);
    const sent = this.authorization;
    const first = await this.send(url, init, sent);
    if (first.status !== 401) return first;

    const challenges = parseWwwAuthenticate(first.headers.get('www-authenticate') ?? '');
    await discard(first);
    const authorization = await this.authorize(challenges, sent !== undefined);
    const second = await this.send(url, init, authorization);
    if (second.status === 401) {
      await discard(second);
      throw this.refused(challenges);
    }
    this.authorization = authorization;
    return second;
  }

  private async authorize(challenges: AuthChallenge[], stale: boolean): Promise<string> {
    const bearer = challenges.find((challenge) => challenge.scheme === 'bearer');
    if (bearer) {
      const scope = `repository:${this.repository}:${this.actions.join(',')}`;
      const key = TokenCache.key(bearer, scope, this.credentials);
      if (stale) this.tokens.invalidate(key);
      const token = await this.tokens.get(key, () => this.fetchToken(bearer, scope));
      return `Bearer ${token}`;
    }
    if (challenges.some((challenge) => challenge.scheme === 'basic')) {
      if (!this.credentials) {
        throw new RegistryAuthError(
          `registry ${this.host} requires a username and password to access ${this.repository}`,
        );
      }
      return basicAuthorization(this.credentials);
    }
    const schemes = challenges.map((challenge) => challenge.scheme).join(', ') || 'none';
    throw new RegistryAuthError(
      `registry ${this.host} answered 401 Unauthorized with no supported challenge (schemes: ${schemes})`,
      { kind: 'Unavailable' },
    );
  }

  private async fetchToken(challenge: AuthChallenge, scope: string): Promise<BearerToken> {
    const url = tokenRequestUrl(challenge, scope, this.credentials);
    const authorization = this.credentials ? basicAuthorization(this.credentials) : undefined;
    const response = await this.send(url, { headers: { accept: 'application/json' } }, authorization);
    if (response.status === 401 || response.status === 403) {
      await discard(response);
      throw new RegistryAuthError(
        this.credentials
          ? `authentication failed for ${this.host}: the token server ${url.origin} refused the credentials ` +
              `of user "${this.credentials.username}" (HTTP ${response.status})`
          : `the token server ${url.origin} of registry ${this.host} refused anonymous access (HTTP ${response.status})`,
        // Anonymous and refused: to Docker, a repository that may not exist.
        { kind: this.credentials ? 'Invalid' : 'NotFound' },
      );
    }
    if (!response.ok) {
      await discard(response);
      throw new RegistryError(
        `the token server ${url.origin} of registry ${this.host} answered HTTP ${response.status}`,
        { status: response.status, retryAfterMs: parseRetryAfter(response.headers.get('retry-after')) },
      );
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error: unknown) {
      throw networkError(
        `the token server ${url.origin} of registry ${this.host} sent an unreadable answer`,
        error,
      );
    }
    const token = parseTokenResponse(body);
    if (!token) {
      throw new RegistryError(
        `the token server ${url.origin} of registry ${this.host} answered without a token`,
      );
    }
    return token;
  }

  private refused(challenges: AuthChallenge[]): RegistryAuthError {
    const user = this.credentials?.username;
    if (challenges.some((challenge) => challenge.scheme === 'bearer')) {
      return new RegistryAuthError(
        user === undefined
          ? `registry ${this.host} refused access to ${this.repository}: the repository does not exist or needs credentials`
          : `registry ${this.host} refused user "${user}" access to ${this.repository}: ` +
              `the repository does not exist or the user may not ${this.actions.join(' or ')} it`,
        { kind: 'NotFound' },
      );
    }
    return new RegistryAuthError(
      `authentication failed for ${this.host}: the registry refused the credentials of user "${user ?? ''}"`,
    );
  }

  /** One exchange, following redirects; credentials go only to the origin they were meant for. */
  private async send(url: URL, init: RegistryRequest, authorization: string | undefined): Promise<Response> {
    let current = url;
    let method = init.method ?? 'GET';
    let body = init.body;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...init.headers };
      if (authorization !== undefined && current.origin === url.origin) headers.authorization = authorization;
      let response: Response;
      try {
        response = await fetch(current, { method, headers, body, redirect: 'manual' });
      } catch (error: unknown) {
        throw networkError(`cannot reach registry ${this.host} (${method} ${displayUrl(current)})`, error);
      }
      this.log(`${method} ${displayUrl(current)}${describeHeaders(headers)} -> ${response.status}`);

      const location = response.headers.get('location');
      if (![301, 302, 303, 307, 308].includes(response.status) || location === null) return response;
      await discard(response);
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryError(`registry ${this.host} redirected more than ${MAX_REDIRECTS} times`);
      }
      const next = new URL(location, current);
      if (current.protocol === 'https:' && next.protocol !== 'https:') {
        throw new RegistryError(
          `registry ${this.host} redirected from HTTPS to ${displayUrl(next)}; refused`,
        );
      }
      if (response.status === 303) {
        method = 'GET';
        body = undefined;
      }
      current = next;
    }
  }
}

/** http:// for loopback hosts and the listed insecure registries, https:// for everything else. */
export function registryBaseUrl(host: string, insecureRegistries: readonly string[] = []): string {
  const insecure = insecureRegistries.map((entry) => entry.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, ''));
  const plain = isLoopbackHost(host) || insecure.includes(host) || insecure.includes(hostnameOf(host));
  return `${plain ? 'http' : 'https'}://${host}`;
}

export function isLoopbackHost(host: string): boolean {
  const hostname = hostnameOf(host).toLowerCase();
  return hostname === 'localhost' || hostname === '::1' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

/** "127.0.0.1:5000" -> "127.0.0.1", "[::1]:5000" -> "::1". */
function hostnameOf(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** A URL for messages and logs, without the query string (signed redirect URLs carry secrets there). */
function displayUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** The headers worth a log line (credentials redacted); Accept lists are noise. */
function describeHeaders(headers: Record<string, string>): string {
  const shown = Object.fromEntries(Object.entries(headers).filter(([name]) => !/^accept/i.test(name)));
  return Object.keys(shown).length > 0 ? ` ${JSON.stringify(redactHeaders(shown))}` : '';
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}
