import {
  basicAuthorization,
  parseTokenResponse,
  parseWwwAuthenticate,
  redactHeaders,
  TokenCache,
  tokenRequestUrl,
  type AuthChallenge,
} from '../../../src/images/registry/auth.js';

describe('parseWwwAuthenticate', () => {
  const cases: [header: string, expected: AuthChallenge[]][] = [
    ['', []],
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/redis:pull',
          },
        },
      ],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    // commas inside quoted values belong to the value
    [
      'Bearer realm="http://127.0.0.1:4000/token",service="reg",scope="repository:a/b:pull,push",error="insufficient_scope"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'http://127.0.0.1:4000/token',
            service: 'reg',
            scope: 'repository:a/b:pull,push',
            error: 'insufficient_scope',
          },
        },
      ],
    ],
    // several challenges in one header
    [
      'Basic realm="a", Bearer realm="https://b/token", service="c"',
      [
        { scheme: 'basic', params: { realm: 'a' } },
        { scheme: 'bearer', params: { realm: 'https://b/token', service: 'c' } },
      ],
    ],
    // scheme and parameter names are case-insensitive; values may be bare tokens; spaces around "="
    [
      'BEARER Realm=https://x/token , Service = reg',
      [{ scheme: 'bearer', params: { realm: 'https://x/token', service: 'reg' } }],
    ],
    ['Bearer realm="a\\"b\\\\c"', [{ scheme: 'bearer', params: { realm: 'a"b\\c' } }]],
    ['Bearer', [{ scheme: 'bearer', params: {} }]],
    // malformed input ends the parse instead of looping
    ['Bearer realm="unterminated', [{ scheme: 'bearer', params: { realm: 'unterminated' } }]],
    ['=', []],
  ];

  it.each(cases)('parses %j', (header, expected) => {
    expect(parseWwwAuthenticate(header)).toEqual(expected);
  });
});

describe('parseTokenResponse', () => {
  it.each([
    [
      { token: 'abc', expires_in: 300 },
      { token: 'abc', expiresIn: 300 },
    ],
    [{ access_token: 'xyz' }, { token: 'xyz', expiresIn: 60 }],
    [
      { token: 'abc', access_token: 'xyz', expires_in: 120 },
      { token: 'abc', expiresIn: 120 },
    ],
    [
      { token: '', access_token: 'xyz' },
      { token: 'xyz', expiresIn: 60 },
    ],
    [
      { token: 'abc', expires_in: 0 },
      { token: 'abc', expiresIn: 60 },
    ],
    [{ token: 42 }, undefined],
    [{}, undefined],
    [null, undefined],
    ['abc', undefined],
  ])('reads %j', (body, expected) => {
    expect(parseTokenResponse(body)).toEqual(expected);
  });
});

describe('credentials in headers', () => {
  it('encodes basic credentials, colons in the password included', () => {
    expect(basicAuthorization({ username: 'ci', password: 'pa:ss' })).toBe(
      `Basic ${Buffer.from('ci:pa:ss').toString('base64')}`,
    );
  });

  it('redacts Authorization and keeps other headers', () => {
    const password = 's3cret-Pa55word';
    const headers = {
      Authorization: basicAuthorization({ username: 'ci', password }),
      accept: 'application/json',
      'proxy-authorization': 'Bearer abc.def.ghi',
    };
    const redacted = redactHeaders(headers);
    expect(redacted).toEqual({
      Authorization: 'Basic <redacted>',
      accept: 'application/json',
      'proxy-authorization': 'Bearer <redacted>',
    });
    expect(JSON.stringify(redacted)).not.toContain(Buffer.from(`ci:${password}`).toString('base64'));
  });
});

describe('tokenRequestUrl', () => {
  const challenge: AuthChallenge = {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token?x=1', service: 'registry.example' },
  };

  it('asks for the scope, the service and the account', () => {
    const url = tokenRequestUrl(challenge, 'repository:a/b:pull', { username: 'ci', password: 'p' });
    expect(url.origin + url.pathname).toBe('https://auth.example/token');
    expect([...url.searchParams]).toEqual([
      ['x', '1'],
      ['service', 'registry.example'],
      ['scope', 'repository:a/b:pull'],
      ['account', 'ci'],
    ]);
    expect(url.toString()).not.toContain('p@');
  });

  it('leaves out the account when anonymous', () => {
    expect(tokenRequestUrl(challenge, 'repository:a:pull').searchParams.has('account')).toBe(false);
  });

  it('refuses a challenge without realm', () => {
    expect(() => tokenRequestUrl({ scheme: 'bearer', params: {} }, 's')).toThrow(/without a realm/);
  });
});

describe('TokenCache', () => {
  const challenge: AuthChallenge = { scheme: 'bearer', params: { realm: 'r', service: 's' } };

  it('shares one token request between concurrent callers of a scope', async () => {
    const cache = new TokenCache();
    let calls = 0;
    const fetchToken = async () => ({ token: `t${++calls}`, expiresIn: 300 });
    const key = TokenCache.key(challenge, 'repository:a:pull');
    const tokens = await Promise.all([cache.get(key, fetchToken), cache.get(key, fetchToken)]);
    expect(tokens).toEqual(['t1', 't1']);
    expect(await cache.get(TokenCache.key(challenge, 'repository:b:pull'), fetchToken)).toBe('t2');
    expect(calls).toBe(2);
  });

  it('keys tokens by user as well as scope', () => {
    const anonymous = TokenCache.key(challenge, 'repository:a:pull');
    const user = TokenCache.key(challenge, 'repository:a:pull', { username: 'ci', password: 'p' });
    expect(anonymous).not.toBe(user);
    expect(user).not.toContain('p\n');
  });

  it('fetches again once a token nears expiry, or after a failure', async () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    let calls = 0;
    const key = TokenCache.key(challenge, 'repository:a:pull');
    const fetchToken = async () => ({ token: `t${++calls}`, expiresIn: 60 });

    expect(await cache.get(key, fetchToken)).toBe('t1');
    now = 49_000;
    expect(await cache.get(key, fetchToken)).toBe('t1');
    now = 50_000;
    expect(await cache.get(key, fetchToken)).toBe('t2');

    const failing = async () => {
      throw new Error('token server down');
    };
    cache.invalidate(key);
    await expect(cache.get(key, failing)).rejects.toThrow('token server down');
    expect(await cache.get(key, fetchToken)).toBe('t3');
  });
});
