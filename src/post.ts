import * as core from '@actions/core';
import { postRun } from './action/post.js';

postRun().catch((error: unknown) =>
  core.warning(`teardown: ${error instanceof Error ? error.message : String(error)}`),
);
