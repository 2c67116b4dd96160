import { runnerBindRoots, serveArgs } from '../../../src/action/docker-api.js';

test("a job's containers may bind the runner's work directory, its temp dir and its tool cache", () => {
  expect(
    runnerBindRoots({
      RUNNER_WORKSPACE: '/home/runner/work/repo',
      RUNNER_TEMP: '/home/runner/work/_temp',
      RUNNER_TOOL_CACHE: '/opt/hostedtoolcache',
    }),
  ).toEqual(['/home/runner/work', '/home/runner/work/_temp', '/opt/hostedtoolcache']);
  // Outside a runner, or with a relative value: nothing.
  expect(runnerBindRoots({ RUNNER_TEMP: 'tmp' })).toEqual([]);
});

test('serveArgs gives each allowed directory its own --allow-bind', () => {
  expect(serveArgs('/a/cli.js', '/s/docker.sock', true, ['/w', '/t'])).toEqual([
    '/a/cli.js',
    'serve',
    '--socket',
    '/s/docker.sock',
    '--allow-bind',
    '/w',
    '--allow-bind',
    '/t',
    '--debug',
  ]);
});
