/**
 * QEMU's own seccomp filter, for every QEMU hyper starts: obsolete system
 * calls and host resource control (scheduling, affinity, priorities) are
 * refused, and QEMU then has no_new_privs, so nothing it runs can gain a
 * privilege through a setuid file.
 *
 * - Spawning is refused unless QEMU must start user networking's helper
 *   (hyper-connect, one per connection between services); migrations go
 *   through descriptors and sockets hyper serves, not `exec:`.
 * - Privilege changes (set*uid, set*gid, setsid) are refused, except where
 *   QEMU drops its own privileges (-runas: it calls setgid and setuid after
 *   the filter is in place, and the filter would kill it; after the drop it
 *   has no capability left, so no such call can raise anything), or where
 *   slirp starts the helper in a session of its own (setsid). Pure.
 */
export function qemuSandbox(options: { dropsPrivileges: boolean; spawns: boolean }): string[] {
  const elevate = options.dropsPrivileges || options.spawns ? 'allow' : 'deny';
  return [
    '-sandbox',
    `on,obsolete=deny,elevateprivileges=${elevate},spawn=${options.spawns ? 'allow' : 'deny'},resourcecontrol=deny`,
  ];
}
