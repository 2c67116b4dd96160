import { networkSettings, NetworkError, splitList, type NetworkSettings } from '../network/settings.js';
import { listOption, stringOption, UsageError, type ParsedArgs } from './args.js';

/** The job network's flags, on every command that may make the network (up, run, import). */
export const NETWORK_OPTIONS = [
  { name: 'network', value: true },
  { name: 'egress', value: true },
  { name: 'egress-allow', value: true, multiple: true },
  { name: 'subnet', value: true },
];

/** The job network's settings from flags, else HYPER_NETWORK, HYPER_EGRESS, HYPER_EGRESS_ALLOW, HYPER_SUBNET. */
export function networkOption(parsed: ParsedArgs, fileSubnet?: string): NetworkSettings {
  try {
    return networkSettings(
      {
        mode: stringOption(parsed, 'network') ?? process.env.HYPER_NETWORK,
        egress: stringOption(parsed, 'egress') ?? process.env.HYPER_EGRESS,
        allow: [
          ...listOption(parsed, 'egress-allow').flatMap((entry) => splitList(entry)),
          ...splitList(process.env.HYPER_EGRESS_ALLOW),
        ],
        subnet: stringOption(parsed, 'subnet') ?? process.env.HYPER_SUBNET ?? fileSubnet,
      },
      { mode: '--network', egress: '--egress', allow: '--egress-allow', subnet: '--subnet' },
    );
  } catch (error: unknown) {
    if (error instanceof NetworkError) throw new UsageError(error.message);
    throw error;
  }
}
