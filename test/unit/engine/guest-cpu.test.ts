import { guestCpu } from '../../../src/engine/snapshots.js';

test('what templates and checkpoints are keyed by: max under TCG, the named model under KVM, else the host CPU', async () => {
  expect(await guestCpu('tcg')).toBe('max');
  expect(await guestCpu('tcg', 'Haswell-v4')).toBe('max');
  expect(await guestCpu('kvm', 'Haswell-v4')).toBe('model Haswell-v4');
  // The host's own CPU names the model and a digest of its flags: it matches only this kind of host.
  expect(await guestCpu('kvm')).toMatch(/^host .+ \(flags [0-9a-f]{12}\)$/);
});
