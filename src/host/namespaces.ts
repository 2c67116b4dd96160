import { run } from '../process/run.js';

let probed: Promise<boolean> | undefined;

/**
 * Whether this process may make network namespaces: it takes
 * CAP_SYS_ADMIN, which root in a container often lacks (Docker's default
 * drops it and its seccomp profile refuses unshare). Asked once, by making
 * one (`unshare --net true`, util-linux).
 */
export function canMakeNetns(): Promise<boolean> {
  probed ??= run({ program: 'unshare', args: ['--net', 'true'] }, { allowFailure: true }).then(
    (result) => result.exitCode === 0,
    () => false,
  );
  return probed;
}
