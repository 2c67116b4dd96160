import {
  DEFAULT_JOB_SETTINGS,
  hostSettings,
  mergeJobSettings,
  type JobSettings,
} from '../../../src/engine/settings.js';

describe('hostSettings: what a door reads from its environment, once', () => {
  test('defaults follow XDG under the home directory', () => {
    expect(hostSettings({}, '/home/u')).toMatchObject({
      stateDir: '/home/u/.local/state/hyper',
      cacheDir: '/home/u/.cache/hyper',
      qemu: 'qemu-system-x86_64',
      registryCredentials: undefined,
    });
  });

  test('HYPER_* variables win, and XDG dirs come next', () => {
    const env = {
      XDG_STATE_HOME: '/xdg/state',
      XDG_CACHE_HOME: '/xdg/cache',
      HYPER_QEMU: '/opt/qemu',
      HYPER_KVM_DEVICE: '/dev/null',
      HYPER_FIREWALL: 'iptables',
      HYPER_BUILD_TMPDIR: '/scratch',
      HYPER_GUEST_BUNDLE_DIR: '/bundle',
      HYPER_REGISTRY_USERNAME: 'me',
    };
    expect(hostSettings(env, '/home/u')).toMatchObject({
      stateDir: '/xdg/state/hyper',
      cacheDir: '/xdg/cache/hyper',
      qemu: '/opt/qemu',
      kvmDevice: '/dev/null',
      firewall: 'iptables',
      buildScratchDir: '/scratch',
      guestBundleDir: '/bundle',
      registryCredentials: { username: 'me', password: '' },
    });
    expect(hostSettings({ ...env, HYPER_STATE_DIR: 'rel/state' }, '/h').stateDir).toMatch(/\/rel\/state$/);
  });

  test('HYPER_JAIL: on unless "off"; anything else is refused, naming the value', () => {
    expect(hostSettings({}, '/h').jail).toBe(true);
    expect(hostSettings({ HYPER_JAIL: 'on' }, '/h').jail).toBe(true);
    expect(hostSettings({ HYPER_JAIL: 'off' }, '/h').jail).toBe(false);
    expect(() => hostSettings({ HYPER_JAIL: 'no' }, '/h')).toThrow(
      'HYPER_JAIL must be "on" or "off", not "no"',
    );
  });

  test('HYPER_CGROUP_PARENT: /hyper when absent; absolute or relative names; anything else is refused, naming it', () => {
    expect(hostSettings({}, '/h').cgroupParent).toBe('/hyper');
    expect(hostSettings({ HYPER_CGROUP_PARENT: 'vms' }, '/h').cgroupParent).toBe('vms');
    expect(hostSettings({ HYPER_CGROUP_PARENT: '/ci/vms' }, '/h').cgroupParent).toBe('/ci/vms');
    expect(() => hostSettings({ HYPER_CGROUP_PARENT: '../up' }, '/h')).toThrow(
      'HYPER_CGROUP_PARENT "../up": give cgroup names between slashes, with no "." or ".." and no empty name',
    );
    expect(() => hostSettings({ HYPER_CGROUP_PARENT: '/a//b' }, '/h')).toThrow(
      /^HYPER_CGROUP_PARENT "\/a\/\/b": give/,
    );
    expect(() => hostSettings({ HYPER_CGROUP_PARENT: 'supervisor' }, '/h')).toThrow(
      `HYPER_CGROUP_PARENT "supervisor": "supervisor" under hyper's own cgroup is where hyper itself moves`,
    );
  });
});

describe('mergeJobSettings: given, then saved, then defaults', () => {
  const saved: Partial<JobSettings> = {
    accel: 'tcg',
    volumeSize: 64 * 1024 ** 2,
    network: { mode: 'user', egress: 'deny', allow: [] },
  };

  test('nothing saved, nothing given: the defaults', () => {
    expect(mergeJobSettings(undefined, {})).toEqual(DEFAULT_JOB_SETTINGS);
  });

  test('what was saved holds where nothing is given', () => {
    expect(mergeJobSettings(saved, { accel: undefined })).toMatchObject(saved);
  });

  test('what is given wins', () => {
    expect(mergeJobSettings(saved, { accel: 'kvm', volumeSize: 1024 ** 3 })).toMatchObject({
      accel: 'kvm',
      volumeSize: 1024 ** 3,
      network: saved.network,
      registry: { insecureRegistries: [] },
    });
  });
});
