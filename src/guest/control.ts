// The hyper.control port's protocol (guest/hyper-resume.c): what the host
// writes to a clone of a boot template or a VM resumed from saved state, and
// the line the guest answers.
import type { GuestNetwork } from './config.js';
import { ustar, type UstarFile } from './ustar.js';

const MAGIC = 'HYP1';
/** hyper-resume's limit on a payload. */
export const CONTROL_PAYLOAD_MAX = 64 * 1024 * 1024;

/**
 * The frame hyper-resume reads: "HYP1", the payload's length (32-bit
 * little-endian) and the payload, a ustar of `clock` (the host's time in
 * nanoseconds since the epoch), `entropy` (fresh random bytes) and `files`
 * (written into the guest's /run/hyper as a booted VM's fw_cfg files are,
 * but for the `network` entry of resumeFiles). The clock goes first, so
 * that it is set before anything else is done. Pure.
 */
export function controlFrame(clockNs: bigint, entropy: Buffer, files: readonly UstarFile[]): Buffer {
  const payload = ustar([
    { name: 'clock', content: Buffer.from(String(clockNs)) },
    { name: 'entropy', content: entropy, mode: 0o600 },
    ...files,
  ]);
  if (payload.length > CONTROL_PAYLOAD_MAX)
    throw new Error(
      `the clone's settings take ${payload.length} bytes, over the ${CONTROL_PAYLOAD_MAX} a clone takes`,
    );
  const header = Buffer.alloc(8);
  header.write(MAGIC, 0, 'ascii');
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/**
 * The files of the frame a VM resumed from saved state (a checkpoint, a
 * service template) gets, when given its network: its hosts and
 * resolv.conf, written over those in /run/hyper that the container's /etc
 * binds, and `network`, which hyper-resume applies to eth0 (the MAC when
 * given: user networking keeps QEMU's; the one IPv4 address; the default
 * route). Pure.
 */
export function resumeFiles(network: GuestNetwork | undefined): UstarFile[] {
  if (!network) return [];
  const lines = [
    ...(network.mac ? [`mac=${network.mac}`] : []),
    `address=${network.ip}/${network.prefix}`,
    `gateway=${network.gateway}`,
  ];
  return [
    { name: 'hosts', content: Buffer.from(network.hosts) },
    { name: 'resolv.conf', content: Buffer.from(network.resolvConf) },
    { name: 'network', content: Buffer.from(`${lines.join('\n')}\n`) },
  ];
}

/**
 * hyper-resume's answer line: undefined for "ok", else what went wrong (an
 * "error ..." line, or anything else it said). Pure.
 */
export function controlAnswerProblem(line: string): string | undefined {
  const text = line.trim();
  if (text === 'ok') return undefined;
  if (text.startsWith('error ')) return text.slice('error '.length);
  return `an answer hyper-resume does not give: ${JSON.stringify(text.slice(0, 200))}`;
}
