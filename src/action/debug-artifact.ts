import { DefaultArtifactClient } from '@actions/artifact';
import * as core from '@actions/core';
import { githubClient } from '../github.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Job } from '../engine/job.js';
import type { KeepOnFailure } from './constants.js';

/**
 * The `keep-on-failure` input: when the job failed, the post step keeps the
 * services' state as a workflow artifact before tearing them down.
 *   volumes:    each service's logs and its writable volumes as compact qcow2
 *               (taken after the service is stopped, so they are clean);
 *   checkpoint: a checkpoint of each running service as a hyper export,
 *               volumes included, to `hyper import` and resume elsewhere.
 */

export interface WorkflowJob {
  status: string;
  runner_name: string | null;
  steps?: { name: string; conclusion: string | null }[];
}

/**
 * Whether this job has a failed step, from the run attempt's jobs: ours is the
 * one in progress on this runner. Undefined when it is not among them. Pure.
 */
export function failedStep(jobs: readonly WorkflowJob[], runnerName: string): string | null | undefined {
  const job = jobs.find((j) => j.status === 'in_progress' && j.runner_name === runnerName);
  if (!job) return undefined;
  return job.steps?.find((step) => step.conclusion === 'failure')?.name ?? null;
}

/**
 * Why the job counts as failed, or undefined when it does not. A post step
 * cannot see the job's status, so when the main step itself succeeded this
 * asks the GitHub API for the job's steps.
 */
export async function jobFailure(
  mainSucceeded: boolean,
  token: string | undefined,
): Promise<string | undefined> {
  if (!mainSucceeded) return 'the hyper-services step failed';
  const repository = process.env.GITHUB_REPOSITORY ?? '';
  const [owner, repo] = repository.split('/');
  const runId = Number(process.env.GITHUB_RUN_ID);
  const attempt = Number(process.env.GITHUB_RUN_ATTEMPT || '1');
  const runnerName = process.env.RUNNER_NAME;
  if (!owner || !repo || !runId || !runnerName) {
    throw new Error('GITHUB_REPOSITORY, GITHUB_RUN_ID and RUNNER_NAME are needed to find this job');
  }
  const octokit = await githubClient(token, process.env.GITHUB_API_URL);
  const jobs = await octokit.paginate(octokit.rest.actions.listJobsForWorkflowRunAttempt, {
    owner,
    repo,
    run_id: runId,
    attempt_number: attempt,
    per_page: 100,
  });
  const step = failedStep(jobs as WorkflowJob[], runnerName);
  if (step === undefined) throw new Error(`no job of run ${runId} is in progress on runner ${runnerName}`);
  return step === null ? undefined : `step "${step}" failed`;
}

/**
 * The post step's part: when the job failed, keeps the services as an
 * artifact. When it cannot tell whether the job failed, it warns and keeps
 * nothing. Never throws.
 */
export async function keepIfFailed(
  mode: KeepOnFailure,
  mainSucceeded: boolean,
  token: string | undefined,
  job: Job,
): Promise<void> {
  if (mode === 'false') return;
  let failure: string | undefined;
  try {
    failure = await jobFailure(mainSucceeded, token);
  } catch (error: unknown) {
    core.warning(
      `keep-on-failure: cannot tell whether the job failed, so nothing is kept: ${(error as Error).message}`,
    );
    return;
  }
  if (!failure) {
    core.info('keep-on-failure: the job has not failed; nothing kept');
    return;
  }
  await core.group(`Keep the services' ${mode} (${failure})`, () =>
    keepForDebugging(mode, debugArtifactName(), job),
  );
}

/**
 * Keeps every service's state as artifact `name`. Failures are warnings: a
 * debugging aid must not hide the job's own failure behind its own.
 */
async function keepForDebugging(
  mode: Exclude<KeepOnFailure, 'false'>,
  name: string,
  job: Job,
): Promise<void> {
  const scratch = await mkdtemp(path.join(process.env.RUNNER_TEMP || os.tmpdir(), 'hyper-debug-'));
  try {
    const files: string[] = [];
    for (const { record } of await job.list()) {
      try {
        const kept = await job.keepForDebugging(record.name, mode, scratch);
        files.push(...kept.map((f) => path.join(scratch, f)));
        core.info(`Kept for debugging: ${kept.join(', ')}`);
      } catch (error: unknown) {
        core.warning(`keep-on-failure: ${record.name}: ${(error as Error).message}`);
      }
    }
    if (files.length === 0) {
      core.info('keep-on-failure: there was nothing to keep');
      return;
    }
    const started = Date.now();
    const uploaded = await new DefaultArtifactClient().uploadArtifact(name, files, scratch, {
      compressionLevel: 1,
    });
    core.info(
      `keep-on-failure: uploaded artifact ${name} (${((uploaded.size ?? 0) / 1024 / 1024).toFixed(1)} MiB, id ${uploaded.id}) in ${Date.now() - started} ms`,
    );
  } catch (error: unknown) {
    core.warning(`keep-on-failure: ${(error as Error).message}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The artifact's name: the job, the attempt and the runner, then the time, as
 * a matrix's jobs share the job id and may run one after another on one runner.
 */
export function debugArtifactName(now = Date.now()): string {
  const job = (process.env.GITHUB_JOB || 'job').replace(/[^a-zA-Z0-9_.-]/g, '-');
  const attempt = process.env.GITHUB_RUN_ATTEMPT || '1';
  const runner = (process.env.RUNNER_NAME || os.hostname()).replace(/[^a-zA-Z0-9_.-]/g, '-');
  return `hyper-services-${job}-${attempt}-${runner}-${now.toString(36)}`;
}
