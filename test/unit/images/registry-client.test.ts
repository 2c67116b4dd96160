import { isLoopbackHost, registryBaseUrl } from '../../../src/images/registry/client.js';
import {
  describeStatus,
  isRetryableStatus,
  parseErrorBody,
  parseRetryAfter,
  RegistryError,
} from '../../../src/images/registry/errors.js';
import { withRetry, type RetryPolicy } from '../../../src/images/registry/retry.js';

describe('registryBaseUrl', () => {
  it.each([
    ['registry-1.docker.io', [], 'https://registry-1.docker.io'],
    ['ghcr.io', [], 'https://ghcr.io'],
    ['localhost:5000', [], 'http://localhost:5000'],
    ['localhost', [], 'http://localhost'],
    ['127.0.0.1:5000', [], 'http://127.0.0.1:5000'],
    ['127.1.2.3:5000', [], 'http://127.1.2.3:5000'],
    ['[::1]:5000', [], 'http://[::1]:5000'],
    ['128.0.0.1:5000', [], 'https://128.0.0.1:5000'],
    ['localhost.example.com', [], 'https://localhost.example.com'],
    ['registry.internal:5000', ['registry.internal:5000'], 'http://registry.internal:5000'],
    ['registry.internal:5000', ['registry.internal'], 'http://registry.internal:5000'],
    ['registry.internal:5000', ['http://registry.internal:5000/'], 'http://registry.internal:5000'],
    ['registry.internal:5000', ['registry.internal:6000'], 'https://registry.internal:5000'],
  ])('reaches %s with insecure %j at %s', (host, insecure, expected) => {
    expect(registryBaseUrl(host, insecure)).toBe(expected);
  });

  it.each([
    ['localhost', true],
    ['LOCALHOST:80', true],
    ['127.0.0.1', true],
    ['[::1]', true],
    ['10.0.0.1', false],
    ['127.example.com', false],
  ])('%s is loopback: %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe('registry error answers', () => {
  it.each([
    [
      '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}',
      { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' },
    ],
    ['{"errors":[{"code":"NAME_UNKNOWN"}]}', { code: 'NAME_UNKNOWN', message: undefined }],
    ['{"errors":[]}', {}],
    ['<html>502 Bad Gateway</html>', {}],
    ['', {}],
  ])('reads %s', (text, expected) => {
    expect(parseErrorBody(text)).toEqual(expected);
  });

  it('describes a status by code when there is one', () => {
    expect(describeStatus(404, { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' })).toBe(
      '(MANIFEST_UNKNOWN: manifest unknown)',
    );
    expect(describeStatus(502, {})).toBe('(HTTP 502)');
  });

  it.each([
    [429, true],
    [500, true],
    [502, true],
    [503, true],
    [408, true],
    [501, false],
    [400, false],
    [401, false],
    [404, false],
  ])('HTTP %s is retryable: %s', (status, expected) => {
    expect(isRetryableStatus(status)).toBe(expected);
  });

  it.each([
    [null, undefined],
    ['', undefined],
    ['0', 0],
    ['2', 2000],
    ['Thu, 01 Jan 1970 00:00:05 GMT', 5000],
    ['soon', undefined],
  ])('Retry-After %j is %s ms', (value, expected) => {
    expect(parseRetryAfter(value, 0)).toBe(expected);
  });
});

describe('withRetry', () => {
  const delays: number[] = [];
  const policy: RetryPolicy = {
    attempts: 3,
    backoffMs: (attempt) => {
      delays.push(attempt);
      return 0;
    },
  };

  beforeEach(() => {
    delays.length = 0;
  });

  it('tries again after a retryable error', async () => {
    let calls = 0;
    const result = await withRetry(policy, async () => {
      calls++;
      if (calls < 3) throw new RegistryError('busy', { status: 429 });
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(delays).toEqual([1, 2]);
  });

  it('gives up after the last attempt and says so', async () => {
    await expect(
      withRetry(policy, async () => {
        throw new RegistryError('registry x answered (HTTP 503)', { status: 503 });
      }),
    ).rejects.toThrow('registry x answered (HTTP 503) (gave up after 3 attempts)');
  });

  it('does not retry what retrying cannot fix', async () => {
    let calls = 0;
    await expect(
      withRetry(policy, async () => {
        calls++;
        throw new RegistryError('not found', { status: 404 });
      }),
    ).rejects.toThrow('not found');
    await expect(
      withRetry(policy, async () => {
        calls++;
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(calls).toBe(2);
  });
});
