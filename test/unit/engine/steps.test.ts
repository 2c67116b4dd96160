import { failedStepName, runSteps, type Step } from '../../../src/engine/steps.js';

type Log = string[];

const step = (name: string, fail = false): Step<Log> => ({
  name,
  async run(log) {
    log.push(`run ${name}`);
    if (fail) throw new Error(`${name} broke`);
  },
  async undo(log) {
    log.push(`undo ${name}`);
  },
});

describe('runSteps: an ordered list of named steps, undone in reverse on failure', () => {
  test('all steps run in order, and nothing is undone', async () => {
    const log: Log = [];
    await runSteps([step('a'), step('b'), step('c')], log);
    expect(log).toEqual(['run a', 'run b', 'run c']);
  });

  test('a failure undoes every step begun, the failing one included, in reverse; later steps never run', async () => {
    const log: Log = [];
    const error = await runSteps([step('a'), step('b'), step('c', true), step('d')], log).catch(
      (e: unknown) => e,
    );
    expect(log).toEqual(['run a', 'run b', 'run c', 'undo c', 'undo b', 'undo a']);
    expect(error).toEqual(new Error('c broke'));
    expect(failedStepName(error)).toBe('c');
  });

  test('an undo that fails is reported and the others still run; the first error is what the caller sees', async () => {
    const log: Log = [];
    const reported: string[] = [];
    const stubborn: Step<Log> = {
      name: 'stubborn',
      run: async () => undefined,
      undo: async () => {
        throw new Error('still there');
      },
    };
    const error = await runSteps([step('a'), stubborn, step('b', true)], log, (line) =>
      reported.push(line),
    ).catch((e: unknown) => e);
    expect(log).toEqual(['run a', 'run b', 'undo b', 'undo a']);
    expect(reported).toEqual(['undoing stubborn: still there']);
    expect((error as Error).message).toBe('b broke');
  });

  test('steps without an undo are skipped when undoing', async () => {
    const log: Log = [];
    const plain: Step<Log> = { name: 'plain', run: async (l) => void l.push('run plain') };
    await expect(runSteps([plain, step('x', true)], log)).rejects.toThrow('x broke');
    expect(log).toEqual(['run plain', 'run x', 'undo x']);
  });
});
