import {
  cgroupLayout,
  cgroupPlan,
  cgroupParentProblem,
  ownCgroups,
  parentPlaces,
  subtreeChain,
} from '../../../src/host/cgroups.js';
import {
  DEFAULT_VM_IDS,
  overlappingEntry,
  probeId,
  subordinateRange,
  userInRange,
} from '../../../src/host/vm-ids.js';

// Mount lines as /proc/self/mountinfo prints them: a hybrid host (v1
// controllers, an empty v2 at unified/) like the machines here, and a v2-only one.
const HYBRID = [
  '30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
  '31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw',
  '33 30 0:29 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu',
  '34 30 0:30 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuacct',
  '35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory',
  '36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids',
].join('\n');
const UNIFIED =
  '29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate';
const LIMITS = { memoryBytes: 1_006_632_960, pids: 512, cpuWeight: 200 };
/** A process in the root cgroup of every hierarchy. */
const AT_ROOT = { v1: {}, unified: '/' };

describe('cgroup layout and plan', () => {
  test('a hybrid host: each controller from its v1 hierarchy, the empty v2 unused', () => {
    const layout = cgroupLayout(HYBRID, () => ['hugetlb']);
    expect(layout).toEqual({
      memory: { mount: '/sys/fs/cgroup/memory', root: '/', v2: false },
      pids: { mount: '/sys/fs/cgroup/pids', root: '/', v2: false },
      cpu: { mount: '/sys/fs/cgroup/cpu', root: '/', v2: false },
    });
    expect(cgroupPlan(parentPlaces(layout, AT_ROOT, '/hyper'), 'vm-abc', LIMITS)).toEqual({
      dirs: [
        '/sys/fs/cgroup/memory/hyper/vm-abc',
        '/sys/fs/cgroup/pids/hyper/vm-abc',
        '/sys/fs/cgroup/cpu/hyper/vm-abc',
      ],
      writes: [
        { file: '/sys/fs/cgroup/memory/hyper/vm-abc/memory.limit_in_bytes', value: '1006632960' },
        { file: '/sys/fs/cgroup/pids/hyper/vm-abc/pids.max', value: '512' },
        // v1's shares: 1024 is the default, as v2's weight 100 is.
        { file: '/sys/fs/cgroup/cpu/hyper/vm-abc/cpu.shares', value: '2048' },
      ],
    });
  });

  test('cgroup v2: one directory with every limit, only controllers the root offers', () => {
    const layout = cgroupLayout(UNIFIED, (mount) =>
      mount === '/sys/fs/cgroup' ? ['cpuset', 'cpu', 'io', 'memory', 'pids'] : [],
    );
    expect(cgroupPlan(parentPlaces(layout, AT_ROOT, '/hyper'), 'vm-abc', LIMITS)).toEqual({
      dirs: ['/sys/fs/cgroup/hyper/vm-abc'],
      writes: [
        { file: '/sys/fs/cgroup/hyper/vm-abc/memory.max', value: '1006632960' },
        { file: '/sys/fs/cgroup/hyper/vm-abc/pids.max', value: '512' },
        { file: '/sys/fs/cgroup/hyper/vm-abc/cpu.weight', value: '200' },
      ],
    });
    expect(
      cgroupPlan(
        parentPlaces(
          cgroupLayout(UNIFIED, () => ['memory']),
          AT_ROOT,
          '/hyper',
        ),
        'x',
        LIMITS,
      ).writes.map((w) => w.file),
    ).toEqual(['/sys/fs/cgroup/hyper/x/memory.max']);
  });

  test('no cgroup mounts (inside "ip netns exec", which remounts /sys): nothing to make', () => {
    const layout = cgroupLayout('22 1 0:21 / /sys rw - sysfs sysfs rw', () => []);
    expect(cgroupPlan(parentPlaces(layout, AT_ROOT, '/hyper'), 'vm-abc', LIMITS)).toEqual({
      dirs: [],
      writes: [],
    });
  });
});

// /proc/self/cgroup as hyper sees it: a shell on a hybrid host (in a memory
// cgroup of its own), and the shipped unit on a v2 host under systemd.
const HYBRID_SELF = [
  '9:name=systemd:/',
  '8:pids:/',
  '4:memory:/sessions/s1',
  '2:cpuacct:/',
  '1:cpu:/',
  '0::/',
].join('\n');
const UNIT_SELF = '0::/system.slice/hyper-serve.service\n';

describe("the parent of the VMs' cgroups (HYPER_CGROUP_PARENT)", () => {
  test('/proc/self/cgroup: v1 by controller, v2 by the line with id 0 and no controller', () => {
    expect(ownCgroups(HYBRID_SELF)).toEqual({
      v1: { 'name=systemd': '/', pids: '/', memory: '/sessions/s1', cpuacct: '/', cpu: '/' },
      unified: '/',
    });
    expect(ownCgroups(UNIT_SELF)).toEqual({ v1: {}, unified: '/system.slice/hyper-serve.service' });
  });

  test("absolute: under each hierarchy's root, wherever hyper itself is", () => {
    const places = parentPlaces(
      cgroupLayout(HYBRID, () => []),
      ownCgroups(HYBRID_SELF),
      '/hyper',
    );
    expect(places.memory).toEqual({
      dir: '/sys/fs/cgroup/memory/hyper',
      mount: '/sys/fs/cgroup/memory',
      v2: false,
    });
  });

  test("relative on a hybrid host: under hyper's own cgroup in each v1 hierarchy", () => {
    const places = parentPlaces(
      cgroupLayout(HYBRID, () => []),
      ownCgroups(HYBRID_SELF),
      'vms',
    );
    expect(places.memory).toEqual({
      dir: '/sys/fs/cgroup/memory/sessions/s1/vms',
      mount: '/sys/fs/cgroup/memory',
      v2: false,
      own: '/sys/fs/cgroup/memory/sessions/s1',
    });
    expect(places.pids?.dir).toBe('/sys/fs/cgroup/pids/vms');
  });

  test("relative under the unit (Delegate=yes, v2): inside the service's cgroup; it and the parent hand the controllers down", () => {
    const layout = cgroupLayout(UNIFIED, () => ['memory', 'pids', 'cpu']);
    const places = parentPlaces(layout, ownCgroups(UNIT_SELF), 'vms');
    const service = '/sys/fs/cgroup/system.slice/hyper-serve.service';
    expect(places.cpu).toEqual({ dir: `${service}/vms`, mount: '/sys/fs/cgroup', v2: true, own: service });
    expect(places.memory).toEqual(places.cpu);
    // systemd's own cgroups above the service are not written: Delegate=yes gave the controllers down to it.
    expect(subtreeChain(places.cpu!)).toEqual([service, `${service}/vms`]);
    expect(cgroupPlan(places, 'vm-abc', LIMITS).dirs).toEqual([`${service}/vms/vm-abc`]);
    // A later hyper of the same service starts where the first moved (or DelegateSubgroup= put it): the same places.
    const later = parentPlaces(
      layout,
      ownCgroups(`0::/system.slice/hyper-serve.service/supervisor\n`),
      'vms',
    );
    expect(later).toEqual(places);
    // No /proc/self/cgroup to read: a relative parent is not guessed to be at the root.
    expect(parentPlaces(layout, { v1: {} }, 'vms')).toEqual({});
    // The default, at the root: the root hands them to /hyper, and /hyper to the VMs.
    const top = parentPlaces(layout, ownCgroups(UNIT_SELF), '/hyper');
    expect(subtreeChain(top.cpu!)).toEqual(['/sys/fs/cgroup', '/sys/fs/cgroup/hyper']);
  });

  test("in a container that sees part of the host's tree: its own cgroup is found below the mounted root, or left out", () => {
    const mountinfo = '40 30 0:27 /docker/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw';
    const layout = cgroupLayout(mountinfo, () => ['memory']);
    expect(layout.memory).toEqual({ mount: '/sys/fs/cgroup', root: '/docker/c1', v2: true });
    expect(parentPlaces(layout, { v1: {}, unified: '/docker/c1/job' }, 'vms').memory?.dir).toBe(
      '/sys/fs/cgroup/job/vms',
    );
    expect(parentPlaces(layout, { v1: {}, unified: '/elsewhere' }, 'vms')).toEqual({});
  });

  test('names are checked: no empty, "." or ".." name, and not the leaf hyper moves into', () => {
    expect(cgroupParentProblem('/hyper')).toBeUndefined();
    expect(cgroupParentProblem('vms/ci')).toBeUndefined();
    expect(cgroupParentProblem('/supervisor')).toBeUndefined();
    for (const bad of ['', '/', 'a//b', './x', 'x/..'])
      expect(cgroupParentProblem(bad)).toBe(
        'give cgroup names between slashes, with no "." or ".." and no empty name',
      );
    expect(cgroupParentProblem('supervisor/x')).toMatch(/where hyper itself moves/);
  });
});

describe('the ids VMs run as', () => {
  test('the block /etc/subuid gives the user, and none when it gives none', () => {
    const text = 'runner:100000:65536\nhyper:1879048192:65536\n';
    expect(subordinateRange(text, 'hyper')).toEqual({ start: 1879048192, count: 65536 });
    expect(subordinateRange('runner:100000:65536\n', 'hyper')).toBeUndefined();
    expect(subordinateRange('hyper:x:65536\n', 'hyper')).toBeUndefined();
  });

  test('a user of /etc/passwd whose uid is in the block is found', () => {
    const passwd =
      'root:x:0:0:root:/root:/bin/bash\nad-user:*:1879050000:1879050000::/home/ad-user:/bin/bash\n';
    expect(userInRange(passwd, DEFAULT_VM_IDS)).toMatch(/^ad-user:/);
    expect(userInRange('root:x:0:0:root:/root:/bin/bash\n', DEFAULT_VM_IDS)).toBeUndefined();
  });

  test("the probe's id is the block's last, which no VM gets", () => {
    expect(probeId(DEFAULT_VM_IDS)).toBe(0x7000_0000 + 65_535);
  });

  test("another user's block that overlaps is named; the user's own and disjoint ones are not", () => {
    expect(
      overlappingEntry('runner:100000:65536\nhyper:1879048192:65536', DEFAULT_VM_IDS, 'hyper'),
    ).toBeUndefined();
    expect(overlappingEntry('nspawn:1879000000:100000\n', DEFAULT_VM_IDS, 'hyper')).toBe(
      'nspawn:1879000000:100000',
    );
    expect(overlappingEntry('late:1879113728:10\n', DEFAULT_VM_IDS, 'hyper')).toBeUndefined();
    expect(overlappingEntry('edge:1879113727:10\n', DEFAULT_VM_IDS, 'hyper')).toBe('edge:1879113727:10');
  });
});
