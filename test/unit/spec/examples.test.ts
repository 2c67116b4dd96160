import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseComposeFile } from '../../../src/spec/compose.js';
import { validatePlan } from '../../../src/spec/plan.js';
import { parseServicesInput } from '../../../src/spec/services-input.js';

// The files in examples/ are what the README points people at: they must parse and plan.
test('examples/services.yml', () => {
  const specs = parseServicesInput(readFileSync('examples/services.yml', 'utf8'), 'examples/services.yml');
  expect(validatePlan(specs).map((wave) => wave.map((s) => s.name))).toEqual([['db'], ['redis']]);
  expect(specs.find((s) => s.name === 'db')?.memoryMiB).toBe(512);
});

test('examples/compose.yml', () => {
  const file = path.resolve('examples/compose.yml');
  const specs = parseComposeFile(readFileSync(file, 'utf8'), file, (p) => readFileSync(p, 'utf8'), {});
  expect(validatePlan(specs).map((wave) => wave.map((s) => s.name))).toEqual([['db'], ['redis']]);
  expect(specs.find((s) => s.name === 'redis')?.command).toEqual(['redis-server', '--save', '']);
});
