import { registryAuth } from '../../../src/api/images.js';
import { statusFor } from '../../../src/api/protocol.js';
import { HyperError } from '../../../src/errors.js';

const header = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('registryAuth: the X-Registry-Auth header', () => {
  test('username and password, as docker login gives them', () => {
    expect(registryAuth(header({ username: 'ci', password: 's3cret', serveraddress: 'ghcr.io' }))).toEqual({
      username: 'ci',
      password: 's3cret',
    });
  });

  test('standard base64 with padding is read too', () => {
    const text = Buffer.from(JSON.stringify({ username: 'u?>', password: 'p~~' })).toString('base64');
    expect(text).toMatch(/[+/=]/);
    expect(registryAuth(text)).toEqual({ username: 'u?>', password: 'p~~' });
  });

  test('an empty password is still credentials', () => {
    expect(registryAuth(header({ username: 'ci', password: '' }))).toEqual({ username: 'ci', password: '' });
  });

  test('a repeated header: the first one', () => {
    expect(
      registryAuth([header({ username: 'a', password: '1' }), header({ username: 'b', password: '2' })]),
    ).toEqual({ username: 'a', password: '1' });
  });

  test.each([
    ['absent', undefined],
    ['empty', ''],
    ['"e30=", which is {}', 'e30='],
    ['"e30" unpadded', 'e30'],
    ['no username', header({ password: 'p' })],
    ['an empty username', header({ username: '', password: 'p' })],
    ['no password', header({ username: 'u' })],
    ['a number as password', header({ username: 'u', password: 1234 })],
    ['an identity token alone', header({ identitytoken: 'tok' })],
  ])('%s means no credentials', (_what, value) => {
    expect(registryAuth(value)).toBeUndefined();
  });

  test.each(['not base64 at all!', Buffer.from('{"username":').toString('base64url'), 'x'])(
    '%s is a 400',
    (value) => {
      let error: unknown;
      try {
        registryAuth(value);
      } catch (caught: unknown) {
        error = caught;
      }
      expect(error).toBeInstanceOf(HyperError);
      expect((error as HyperError).message).toBe('X-Registry-Auth: not base64url-encoded JSON');
      expect(statusFor(error)).toBe(400);
    },
  );
});
