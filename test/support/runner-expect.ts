import { expect } from '@jest/globals';
import { jobLeftovers, type RunnerJob } from './runner.js';

// Apart from runner.ts, which the benchmarks import outside jest.

/** Fails the test when a job left a QEMU process or anything in its RUNNER_TEMP. */
export async function expectNothingLeft(job: RunnerJob): Promise<void> {
  expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
}
