/** The first of `settled` that failed, in the order given: its index and reason. */
export function firstFailure(
  settled: readonly PromiseSettledResult<unknown>[],
): { index: number; reason: unknown } | undefined {
  const index = settled.findIndex((result) => result.status === 'rejected');
  return index < 0 ? undefined : { index, reason: (settled[index] as PromiseRejectedResult).reason };
}

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
  const failure = firstFailure(settled);
  if (failure) throw failure.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
