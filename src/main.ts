import * as core from '@actions/core';
import { mainRun } from './action/main.js';

mainRun().catch((error: unknown) => core.setFailed(error instanceof Error ? error.message : String(error)));
