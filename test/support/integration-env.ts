// Tests send traffic only to loopback or into a network namespace they made
// themselves. As root, network auto would put VMs on a bridge in this host's
// own namespace, so every test uses user networking unless it says otherwise;
// the bridge-mode tests run the CLI inside a namespace they create
// (test/integration/network).
process.env.HYPER_NETWORK ??= 'user';

// What a front door does before it gets a guest bundle: @actions/tool-cache reads these.
import { toolCacheEnv } from '../../src/guest/bundle.js';
import { cacheDir } from './dirs.js';
for (const [name, value] of Object.entries(toolCacheEnv(cacheDir()))) process.env[name] ??= value;
