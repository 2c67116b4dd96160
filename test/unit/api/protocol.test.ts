import { HyperError } from '../../../src/errors.js';
import {
  API_VERSION,
  frame,
  humanDuration,
  labelFilter,
  labelsMatch,
  MIN_API_VERSION,
  NotImplementedError,
  parseFilters,
  splitVersion,
  statusFor,
  STDERR,
  STDOUT,
} from '../../../src/api/protocol.js';
import { SpecError } from '../../../src/spec/container.js';

/** The error `run` throws, so its message and kind can both be compared. */
function thrown(run: () => unknown): HyperError {
  try {
    run();
  } catch (error: unknown) {
    if (error instanceof HyperError) return error;
    throw error;
  }
  throw new Error('nothing was thrown');
}

describe('frame: one stdcopy frame', () => {
  test('stream id, three zero bytes, the size big-endian, then the bytes', () => {
    expect([...frame(STDOUT, Buffer.from('hi\n'))]).toEqual([1, 0, 0, 0, 0, 0, 0, 3, 0x68, 0x69, 0x0a]);
    expect([...frame(STDERR, Buffer.from('x'))]).toEqual([2, 0, 0, 0, 0, 0, 0, 1, 0x78]);
  });

  test('a size over 255 takes more than one byte', () => {
    const data = Buffer.alloc(0x01_02_03, 7);
    const framed = frame(STDOUT, data);
    expect([...framed.subarray(0, 8)]).toEqual([1, 0, 0, 0, 0, 0x01, 0x02, 0x03]);
    expect(framed.subarray(8).equals(data)).toBe(true);
  });

  test('an empty payload is a header alone', () => {
    expect([...frame(STDERR, Buffer.alloc(0))]).toEqual([2, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('splitVersion: the /vX.Y prefix', () => {
  test.each([
    ['/v1.47/containers/json', '1.47', '/containers/json'],
    ['/v1.24/_ping', '1.24', '/_ping'],
    ['/v1.41/images/127.0.0.1:5000/demo/httpd:1/json', '1.41', '/images/127.0.0.1:5000/demo/httpd:1/json'],
  ])('%s is version %s of %s', (pathname, version, path) => {
    expect(splitVersion(pathname)).toEqual({ version, path });
  });

  test('no prefix is the newest version', () => {
    expect(splitVersion('/containers/json')).toEqual({ version: API_VERSION, path: '/containers/json' });
    expect(splitVersion('/_ping')).toEqual({ version: '1.47', path: '/_ping' });
  });

  test('a prefix with nothing after it is not a version prefix', () => {
    expect(splitVersion('/v1.47')).toEqual({ version: API_VERSION, path: '/v1.47' });
  });

  test.each(['/v1.48/containers/json', '/v1.100/containers/json', '/v2.0/containers/json'])(
    '%s is too new, in the words Docker uses',
    (pathname) => {
      const version = /^\/v([^/]+)/.exec(pathname)?.[1];
      const error = thrown(() => splitVersion(pathname));
      expect(error.message).toBe(
        `client version ${version} is too new. Maximum supported API version is 1.47`,
      );
      expect(statusFor(error)).toBe(400);
    },
  );

  test.each(['/v1.23/containers/json', '/v1.9/containers/json', '/v0.99/containers/json'])(
    '%s is too old, in the words Docker uses',
    (pathname) => {
      const version = /^\/v([^/]+)/.exec(pathname)?.[1];
      const error = thrown(() => splitVersion(pathname));
      expect(error.message).toBe(
        `client version ${version} is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version`,
      );
      expect(statusFor(error)).toBe(400);
    },
  );

  test('the range served', () => {
    expect([MIN_API_VERSION, API_VERSION]).toEqual(['1.24', '1.47']);
  });
});

describe("statusFor: Docker's status code for an error", () => {
  test.each([
    ['Invalid', 400],
    ['NotFound', 404],
    ['Conflict', 409],
    ['Internal', 500],
  ] as const)('a %s error is %d', (kind, status) => {
    expect(statusFor(new HyperError('x', { kind }))).toBe(status);
  });

  test('what no handler serves is 501', () => {
    expect(statusFor(new NotImplementedError('hyper-services does not implement POST /swarm/init'))).toBe(
      501,
    );
  });

  test('a subclass keeps its default kind', () => {
    expect(statusFor(new SpecError('bad spec'))).toBe(400);
  });

  test('anything else is a 500', () => {
    expect(statusFor(new Error('boom'))).toBe(500);
    expect(statusFor('a string')).toBe(500);
    expect(statusFor(undefined)).toBe(500);
  });
});

describe('parseFilters', () => {
  test('absent or empty is no filter', () => {
    expect(parseFilters(null)).toEqual({});
    expect(parseFilters('')).toEqual({});
    expect(parseFilters('{}')).toEqual({});
  });

  test('the list form', () => {
    expect(parseFilters('{"label":["a=b","c"],"status":["running"]}')).toEqual({
      label: ['a=b', 'c'],
      status: ['running'],
    });
  });

  test('the older map form keeps the entries set to true', () => {
    expect(parseFilters('{"label":{"a=b":true,"c":false,"d":true}}')).toEqual({ label: ['a=b', 'd'] });
  });

  test('list entries that are not strings are made strings', () => {
    expect(parseFilters('{"exited":[0,137]}')).toEqual({ exited: ['0', '137'] });
  });

  test.each([
    ['{label', 'invalid filter: {label is not JSON'],
    ['label=a', 'invalid filter: label=a is not JSON'],
    ['["label"]', 'invalid filter: must be a JSON object of lists'],
    ['"label"', 'invalid filter: must be a JSON object of lists'],
    ['null', 'invalid filter: must be a JSON object of lists'],
    ['{"label":"a=b"}', "invalid filter 'label'"],
    ['{"dangling":true}', "invalid filter 'dangling'"],
    ['{"label":null}', "invalid filter 'label'"],
  ])('%s is refused', (text, message) => {
    const error = thrown(() => parseFilters(text));
    expect(error.message).toBe(message);
    expect(error.kind).toBe('Invalid');
  });
});

describe('labelFilter and labelsMatch', () => {
  test('"key" matches any value, "key=value" that value; the first "=" splits', () => {
    expect(labelFilter(['a', 'b=c', 'd=e=f', 'g='])).toEqual({
      a: undefined,
      b: 'c',
      d: 'e=f',
      g: '',
    });
  });

  const labels = { 'com.example.job': '42', 'org.testcontainers': 'true', empty: '' };

  test.each([
    [[], true],
    [['org.testcontainers'], true],
    [['org.testcontainers=true'], true],
    [['org.testcontainers=false'], false],
    [['com.example.job=42', 'org.testcontainers'], true],
    [['com.example.job=42', 'missing'], false],
    [['missing'], false],
    [['empty'], true],
    [['empty='], true],
    [['empty=x'], false],
    [['com.example.job=4'], false],
  ])('%j: %s', (entries, matches) => {
    expect(labelsMatch(labels, entries)).toBe(matches);
  });
});

describe('humanDuration: as docker ps shows it', () => {
  // The expectations are those of Docker's own (github.com/docker/go-units).
  test.each([
    [0, 'Less than a second'],
    [0.45, 'Less than a second'],
    [1, '1 second'],
    [1.5, '1 second'],
    [45, '45 seconds'],
    [59, '59 seconds'],
    [59.9, '59 seconds'],
    [60, 'About a minute'],
    [3 * 60, '3 minutes'],
    [35 * 60, '35 minutes'],
    [59 * 60, '59 minutes'],
    [3600, 'About an hour'],
    [3600 + 29 * 60, 'About an hour'],
    [3600 + 31 * 60, '2 hours'],
    [3 * 3600, '3 hours'],
    [3 * 3600 + 29 * 60, '3 hours'],
    [3 * 3600 + 31 * 60, '4 hours'],
    [24 * 3600, '24 hours'],
    [36 * 3600, '36 hours'],
    [2 * 86400, '2 days'],
    [7 * 86400, '7 days'],
    [13 * 86400 + 5 * 3600, '13 days'],
  ])('%d s: %s', (seconds, text) => {
    expect(humanDuration(seconds)).toBe(text);
  });
});
