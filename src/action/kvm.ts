import { access, constants, stat } from 'node:fs/promises';
import { run } from '../process/run.js';

const UDEV_RULE = 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"';
const UDEV_RULE_FILE = '/etc/udev/rules.d/99-hyper-services-kvm.rules';

/** The commands that open /dev/kvm to the runner user, as GitHub's own docs do it. Pure. */
export function kvmUdevCommands(isRoot: boolean): { program: string; args: string[] }[] {
  const sudo = (program: string, args: string[]) =>
    isRoot ? { program, args } : { program: 'sudo', args: ['-n', program, ...args] };
  return [
    sudo('sh', ['-c', `echo '${UDEV_RULE}' > ${UDEV_RULE_FILE}`]),
    sudo('udevadm', ['control', '--reload-rules']),
    sudo('udevadm', ['trigger', '--name-match=kvm']),
  ];
}

/** On a hosted runner /dev/kvm exists but is not the runner user's; open it. Returns what happened. */
export async function enableKvm(): Promise<string> {
  if (!(await stat('/dev/kvm').catch(() => undefined))) return '/dev/kvm does not exist';
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    return '/dev/kvm is usable';
  } catch {
    // Fall through to the udev rule.
  }
  try {
    for (const command of kvmUdevCommands(process.getuid?.() === 0)) await run(command);
    return `added ${UDEV_RULE_FILE}`;
  } catch (error: unknown) {
    return `could not open /dev/kvm: ${(error as Error).message}`;
  }
}
