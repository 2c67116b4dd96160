// In src/tools, beside qemu-img's client; the binary is passed in, since its name is src/vm's (HYPER_QEMU).
import { run, type Command } from '../../process/run.js';

export interface QemuVersion {
  /** The first line, e.g. "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)": part of a checkpoint's identity. */
  text: string;
  /** "7.2.19"; undefined when the line does not name one. */
  version: string | undefined;
}

export function qemuVersionCommand(binary: string): Command {
  return { program: binary, args: ['--version'] };
}

/** Parses `qemu-system-* --version` or `qemu-img --version`. Pure. */
export function parseQemuVersion(stdout: string): QemuVersion {
  const text = stdout.split('\n')[0] ?? '';
  return { text, version: /\bversion (\d+(?:\.\d+)+)/.exec(text)?.[1] };
}

/** Whether `version` ("7.2.22") is `major`.`minor` or later; an unknown version is taken as older than any. Pure. */
export function qemuAtLeast(version: string | undefined, major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = (version ?? '').split('.').map(Number);
  return have > major || (have === major && haveMinor >= minor);
}

export async function qemuVersion(binary: string): Promise<QemuVersion> {
  return parseQemuVersion((await run(qemuVersionCommand(binary))).stdout);
}

const asked = new Map<string, Promise<QemuVersion>>();

/** qemuVersion, asked once per binary and process (a failure is asked again). */
export function knownQemuVersion(binary: string): Promise<QemuVersion> {
  let version = asked.get(binary);
  if (!version) {
    version = qemuVersion(binary);
    version.catch(() => asked.delete(binary));
    asked.set(binary, version);
  }
  return version;
}
