import { concurrently } from '../../../src/process/concurrently.js';

const after = <T>(ms: number, value: T): Promise<T> =>
  new Promise((resolve) => setTimeout(() => resolve(value), ms));

test('gives every value, in the order given, whichever ends first', async () => {
  await expect(concurrently([after(20, 'slow'), after(0, 1)] as const)).resolves.toEqual(['slow', 1]);
});

test('a failure is thrown only once every other task has ended', async () => {
  const ended: string[] = [];
  const error = await concurrently([
    Promise.reject(new Error('first')),
    after(30, undefined).then(() => void ended.push('slow')),
  ]).catch((e: unknown) => e);
  expect(ended).toEqual(['slow']);
  expect((error as Error).message).toBe('first');
});

test('of several failures, the first in the order given is thrown', async () => {
  const error = await concurrently([
    after(20, undefined).then(() => Promise.reject(new Error('listed first, fails last'))),
    Promise.reject(new Error('fails first')),
  ]).catch((e: unknown) => e);
  expect((error as Error).message).toBe('listed first, fails last');
});
