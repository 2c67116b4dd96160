import { cruise } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/project-root.js';

// The lint's layer rules, run on a small tree of its own: the checker must
// name an upward import and a cycle, and leave a downward import alone.
let tree: string;

const FILES: Record<string, string> = {
  'src/engine/dirs.ts': "export const stateDir = (): string => '/state';\n",
  'src/engine/service.ts':
    "import { volumePath } from '../storage/volumes.js';\nexport const at = volumePath();\n",
  'src/storage/volumes.ts':
    "import { stateDir } from '../engine/dirs.js';\nexport const volumePath = (): string => stateDir();\n",
  'src/process/a.ts': "import { b } from './b.js';\nexport const a = (): number => b() + 1;\n",
  'src/process/b.ts': "import { a } from './a.js';\nexport const b = (): number => a() - 1;\n",
};

beforeAll(async () => {
  tree = await mkdtemp(path.join(os.tmpdir(), 'hyper-layers-'));
  for (const [name, text] of Object.entries(FILES)) {
    await mkdir(path.dirname(path.join(tree, name)), { recursive: true });
    await writeFile(path.join(tree, name), text);
  }
});

afterAll(async () => {
  await rm(tree, { recursive: true, force: true });
});

async function violations(): Promise<string[]> {
  const options = await extractDepcruiseOptions(path.join(projectRoot(), '.dependency-cruiser.mjs'));
  // The config's tsconfig path is the project's; this tree resolves plain relative imports without one.
  delete options.tsConfig;
  const result = await cruise(['src'], { ...options, baseDir: tree });
  if (typeof result.output === 'string') throw new Error('expected a cruise result, got text');
  return result.output.summary.violations.map(
    (v) =>
      `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`,
  );
}

test('an upward import and a cycle fail the check, each under its rule; a downward import passes', async () => {
  const found = await violations();
  expect(found.sort()).toEqual([
    'layer-up-from-storage-network: src/storage/volumes.ts -> src/engine/dirs.ts',
    'no-circular: src/process/a.ts -> src/process/b.ts (src/process/b.ts -> src/process/a.ts)',
  ]);
});
