import { failedStepName, runSteps, together, type Step } from '../../../src/engine/steps.js';

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

/** A step whose undo always fails. */
const stubborn: Step<Log> = {
  name: 'stubborn',
  run: async () => undefined,
  undo: async () => {
    throw new Error('still there');
  },
};

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

describe('together: steps that need nothing of each other, run at once as one step', () => {
  test('both run before either ends, and a later step runs after both', async () => {
    const log: Log = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: Step<Log> = {
      name: 'slow',
      async run(l) {
        l.push('start slow');
        await gate;
        l.push('end slow');
      },
    };
    const quick: Step<Log> = {
      name: 'quick',
      async run(l) {
        l.push('run quick');
        release();
      },
    };
    await runSteps([together([slow, quick]), step('after')], log);
    expect(log).toEqual(['start slow', 'run quick', 'end slow', 'run after']);
  });

  test('one failing: the other still ends first, both are undone in reverse, and the error names the failing step', async () => {
    const log: Log = [];
    const late: Step<Log> = {
      name: 'late',
      async run(l) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        l.push('run late');
      },
      async undo(l) {
        l.push('undo late');
      },
    };
    const error = await runSteps([step('a'), together([late, step('broken', true)])], log).catch(
      (e: unknown) => e,
    );
    expect(log).toEqual(['run a', 'run broken', 'run late', 'undo broken', 'undo late', 'undo a']);
    expect((error as Error).message).toBe('broken broke');
    expect(failedStepName(error)).toBe('broken');
  });

  test('of two that fail, the error is the first listed; a run that throws before any await is caught the same way', async () => {
    const log: Log = [];
    const sync: Step<Log> = {
      name: 'sync',
      run: (l) => {
        l.push('run sync');
        throw new Error('sync broke');
      },
    };
    const error = await runSteps([together([step('first', true), sync])], log).catch((e: unknown) => e);
    expect(log).toEqual(['run first', 'run sync', 'undo first']);
    expect((error as Error).message).toBe('first broke');
    expect(failedStepName(error)).toBe('first');
    const alone = await runSteps([together([sync, step('other')])], []).catch((e: unknown) => e);
    expect(failedStepName(alone)).toBe('sync');
  });

  test('an undo that fails does not stop the other undo, and is reported', async () => {
    const log: Log = [];
    const reported: string[] = [];
    await expect(
      runSteps([together([step('a'), stubborn]), step('b', true)], log, (line) => reported.push(line)),
    ).rejects.toThrow('b broke');
    expect(log).toEqual(['run a', 'run b', 'undo b', 'undo a']);
    expect(reported).toEqual(['undoing stubborn: still there']);
  });
});
