import { debugArtifactName, failedStep, type WorkflowJob } from '../../../src/action/debug-artifact.js';
import { snapshotEnv } from '../../support/env.js';

const restoreEnv = snapshotEnv();
afterEach(restoreEnv);

describe('failedStep', () => {
  const jobs: WorkflowJob[] = [
    { status: 'completed', runner_name: 'r1', steps: [{ name: 'build', conclusion: 'failure' }] },
    {
      status: 'in_progress',
      runner_name: 'r2',
      steps: [
        { name: 'Set up job', conclusion: 'success' },
        { name: 'Run tests', conclusion: 'failure' },
        { name: 'Post hyper-services', conclusion: null },
      ],
    },
    { status: 'in_progress', runner_name: 'r3', steps: [{ name: 'Run tests', conclusion: 'success' }] },
  ];

  test("names this runner's in-progress job's failed step, not another job's", () => {
    expect(failedStep(jobs, 'r2')).toBe('Run tests');
  });

  test('null when no step failed', () => {
    expect(failedStep(jobs, 'r3')).toBeNull();
  });

  test('undefined when the runner has no job in progress (a finished job on it does not count)', () => {
    expect(failedStep(jobs, 'r1')).toBeUndefined();
    expect(failedStep([], 'r2')).toBeUndefined();
  });
});

test('the artifact name carries job, attempt, runner and time, in characters artifacts accept', () => {
  process.env.GITHUB_JOB = 'test';
  process.env.GITHUB_RUN_ATTEMPT = '3';
  process.env.RUNNER_NAME = 'GitHub Actions 12';
  expect(debugArtifactName(36 ** 3)).toBe('hyper-services-test-3-GitHub-Actions-12-1000');
});
