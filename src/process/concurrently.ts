/**
 * Awaits every promise, even after one has failed, then gives their values
 * or throws the first failure (in the order given). Work started together
 * ends together: nothing is left running behind an error, as a child
 * process would be after Promise.all.
 */
export async function concurrently<T extends readonly unknown[]>(tasks: {
  readonly [K in keyof T]: Promise<T[K]>;
}): Promise<T> {
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
