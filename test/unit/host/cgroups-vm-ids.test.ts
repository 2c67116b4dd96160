import { cgroupLayout, cgroupPlan } from '../../../src/host/cgroups.js';
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

describe('cgroup layout and plan', () => {
  test('a hybrid host: each controller from its v1 hierarchy, the empty v2 unused', () => {
    const layout = cgroupLayout(HYBRID, () => ['hugetlb']);
    expect(layout).toEqual({
      memory: { mount: '/sys/fs/cgroup/memory', v2: false },
      pids: { mount: '/sys/fs/cgroup/pids', v2: false },
      cpu: { mount: '/sys/fs/cgroup/cpu', v2: false },
    });
    expect(cgroupPlan(layout, 'vm-abc', LIMITS)).toEqual({
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
    expect(cgroupPlan(layout, 'vm-abc', LIMITS)).toEqual({
      dirs: ['/sys/fs/cgroup/hyper/vm-abc'],
      writes: [
        { file: '/sys/fs/cgroup/hyper/vm-abc/memory.max', value: '1006632960' },
        { file: '/sys/fs/cgroup/hyper/vm-abc/pids.max', value: '512' },
        { file: '/sys/fs/cgroup/hyper/vm-abc/cpu.weight', value: '200' },
      ],
    });
    expect(
      cgroupPlan(
        cgroupLayout(UNIFIED, () => ['memory']),
        'x',
        LIMITS,
      ).writes.map((w) => w.file),
    ).toEqual(['/sys/fs/cgroup/hyper/x/memory.max']);
  });

  test('no cgroup mounts (inside "ip netns exec", which remounts /sys): nothing to make', () => {
    const layout = cgroupLayout('22 1 0:21 / /sys rw - sysfs sysfs rw', () => []);
    expect(cgroupPlan(layout, 'vm-abc', LIMITS)).toEqual({ dirs: [], writes: [] });
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
