/** HYPER_KVM_DEVICE: the device the KVM probe opens (tests point it at a stand-in). */
export function kvmProbeOptions(): { kvmDevice?: string } {
  const device = process.env.HYPER_KVM_DEVICE;
  return device ? { kvmDevice: device } : {};
}
