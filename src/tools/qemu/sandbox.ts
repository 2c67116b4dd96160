/**
 * QEMU's own seccomp filter, for every QEMU hyper starts: obsolete system
 * calls and host resource control (scheduling, affinity, priorities) are
 * refused, and QEMU then has no_new_privs, so nothing it runs can gain a
 * privilege through a setuid file. Privilege changes (setuid, setgid and
 * the like, and setsid) are refused too, except where user-mode networking
 * serves connections between services: QEMU's slirp starts hyper-connect for
 * each one in a session of its own (setsid), and the filter would kill QEMU
 * there. Spawning stays allowed: that same helper, and migration to and from
 * files (templates, checkpoints) through `exec:cat`. Pure.
 */
export function qemuSandbox(userNetwork: boolean): string[] {
  return [
    '-sandbox',
    `on,obsolete=deny,elevateprivileges=${userNetwork ? 'allow' : 'deny'},spawn=allow,resourcecontrol=deny`,
  ];
}
