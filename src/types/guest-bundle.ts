/** The guest's kernel and initramfs (built by src/guest, booted by src/vm, probed by src/install). No logic. */
export interface GuestBundle {
  /** Content hash of the recipe that built it. */
  version: string;
  kernel: string;
  initrd: string;
  /** The host-side helper user networking runs for each connection between services (guest/hyper-connect.c). */
  connect: string;
}
