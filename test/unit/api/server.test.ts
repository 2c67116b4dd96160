import {
  inspectContainer,
  listContainers,
  createContainer,
  removeContainer,
} from '../../../src/api/containers.js';
import { startExec } from '../../../src/api/exec.js';
import { inspectImage, pullImage, removeImage } from '../../../src/api/images.js';
import { connectNetwork, inspectNetwork } from '../../../src/api/networks.js';
import { NotImplementedError, statusFor } from '../../../src/api/protocol.js';
import { route } from '../../../src/api/server.js';
import { ping, version } from '../../../src/api/system.js';
import { inspectVolume } from '../../../src/api/volumes.js';
import { HyperError } from '../../../src/errors.js';

/** The error route() throws for a request. */
function refusal(method: string, pathname: string): HyperError {
  try {
    route(method, pathname);
  } catch (error: unknown) {
    if (error instanceof HyperError) return error;
    throw error;
  }
  throw new Error(`${method} ${pathname} was routed`);
}

describe('route: the handler for a request, and what its path names', () => {
  test.each([
    ['GET', '/_ping', ping, []],
    ['HEAD', '/_ping', ping, []],
    ['GET', '/v1.47/version', version, []],
    ['POST', '/v1.43/containers/create', createContainer, []],
    ['GET', '/v1.24/containers/json', listContainers, []],
    ['GET', '/containers/json', listContainers, []],
    ['GET', '/containers/3f9a/json', inspectContainer, ['3f9a']],
    ['DELETE', '/v1.41/containers/brave_curie1', removeContainer, ['brave_curie1']],
    ['POST', '/exec/e1/start', startExec, ['e1']],
    ['POST', '/images/create', pullImage, []],
    ['GET', '/networks/backend', inspectNetwork, ['backend']],
    ['POST', '/v1.44/networks/backend/connect', connectNetwork, ['backend']],
    ['GET', '/volumes/pgdata', inspectVolume, ['pgdata']],
  ])('%s %s', (method, pathname, handler, params) => {
    expect(route(method, pathname)).toEqual({ handler, params });
  });

  test('the same path with and without a version prefix is the same route', () => {
    expect(route('GET', '/v1.47/containers/db/json')).toEqual(route('GET', '/containers/db/json'));
  });

  test('an image name may hold slashes, a registry port and a tag', () => {
    expect(route('GET', '/images/127.0.0.1:5000/demo/httpd:1/json')).toEqual({
      handler: inspectImage,
      params: ['127.0.0.1:5000/demo/httpd:1'],
    });
    expect(route('GET', '/v1.47/images/127.0.0.1:5000/demo/httpd:1/json')).toEqual({
      handler: inspectImage,
      params: ['127.0.0.1:5000/demo/httpd:1'],
    });
    expect(route('DELETE', '/v1.47/images/127.0.0.1:5000/demo/httpd:1')).toEqual({
      handler: removeImage,
      params: ['127.0.0.1:5000/demo/httpd:1'],
    });
  });

  test('names are percent-decoded', () => {
    expect(route('GET', '/images/demo%2Fhttpd%3A1/json').params).toEqual(['demo/httpd:1']);
    expect(route('GET', '/containers/my%2Ddb/json').params).toEqual(['my-db']);
  });

  test('a container name cannot hold a slash', () => {
    expect(refusal('GET', '/containers/a/b/json').message).toBe(
      'hyper-services does not implement GET /containers/a/b/json',
    );
  });

  test('what is not served is a 501 naming the request, without its version prefix', () => {
    const error = refusal('POST', '/v1.47/swarm/init');
    expect(error).toBeInstanceOf(NotImplementedError);
    expect(error.message).toBe('hyper-services does not implement POST /swarm/init');
    expect(statusFor(error)).toBe(501);
    expect(refusal('POST', '/swarm/init').message).toBe('hyper-services does not implement POST /swarm/init');
  });

  test('a served path with the wrong method is not served', () => {
    expect(refusal('PUT', '/containers/json').message).toBe(
      'hyper-services does not implement PUT /containers/json',
    );
    expect(refusal('GET', '/containers/create').message).toBe(
      'hyper-services does not implement GET /containers/create',
    );
  });

  test('a version out of range is refused before routing', () => {
    const error = refusal('GET', '/v1.99/containers/json');
    expect(error.message).toBe('client version 1.99 is too new. Maximum supported API version is 1.47');
    expect(statusFor(error)).toBe(400);
  });
});
