import { nextHealth, type HealthState } from '../../../src/engine/health-monitor.js';
import type { HealthcheckSpec } from '../../../src/images/run-config.js';

const CHECK: HealthcheckSpec = {
  test: ['CMD-SHELL', 'pg_isready'],
  intervalMs: 1000,
  timeoutMs: 1000,
  startPeriodMs: 10_000,
  retries: 3,
};
const STARTING: HealthState = { status: 'starting', failingStreak: 0, log: [] };

let clock = Date.parse('2025-01-02T03:04:05.000Z');
/** One probe, a second after the last. */
function probe(ok: boolean, output = ok ? 'accepting connections' : 'no response') {
  clock += 1000;
  return { ok, output, start: new Date(clock), end: new Date(clock + 20) };
}

/** The health after a series of probes ("pass"/"fail"), all in or all after the start period. */
function after(outcomes: ('pass' | 'fail')[], inStartPeriod = false, from = STARTING, check = CHECK) {
  return outcomes.reduce(
    (health, outcome) => nextHealth(health, check, probe(outcome === 'pass'), inStartPeriod),
    from,
  );
}

const summary = (health: HealthState) => ({ status: health.status, failingStreak: health.failingStreak });

describe("nextHealth: one probe's outcome, by Docker's rules", () => {
  test('a probe is logged with its times, exit code and output', () => {
    const pass = probe(true, 'ok');
    const fail = probe(false, 'connection refused');
    const health = nextHealth(nextHealth(STARTING, CHECK, pass, false), CHECK, fail, false);
    expect(health.log).toEqual([
      { start: pass.start.toISOString(), end: pass.end.toISOString(), exitCode: 0, output: 'ok' },
      {
        start: fail.start.toISOString(),
        end: fail.end.toISOString(),
        exitCode: 1,
        output: 'connection refused',
      },
    ]);
  });

  test('a pass is healthy with no failing streak', () => {
    expect(summary(after(['pass']))).toEqual({ status: 'healthy', failingStreak: 0 });
    expect(summary(after(['pass'], true))).toEqual({ status: 'healthy', failingStreak: 0 });
  });

  test('a pass ends a failing streak, and ends unhealthy', () => {
    expect(summary(after(['fail', 'fail', 'pass']))).toEqual({ status: 'healthy', failingStreak: 0 });
    expect(summary(after(['fail', 'fail', 'fail', 'fail', 'pass']))).toEqual({
      status: 'healthy',
      failingStreak: 0,
    });
  });

  test('failures in the start period do not count while starting, but are logged', () => {
    const health = after(['fail', 'fail', 'fail', 'fail', 'fail'], true);
    expect(summary(health)).toEqual({ status: 'starting', failingStreak: 0 });
    expect(health.log.map((entry) => entry.exitCode)).toEqual([1, 1, 1, 1, 1]);
  });

  test('after the start period, retries consecutive failures make it unhealthy', () => {
    expect(summary(after(['fail']))).toEqual({ status: 'starting', failingStreak: 1 });
    expect(summary(after(['fail', 'fail']))).toEqual({ status: 'starting', failingStreak: 2 });
    expect(summary(after(['fail', 'fail', 'fail']))).toEqual({ status: 'unhealthy', failingStreak: 3 });
    expect(summary(after(['fail', 'fail', 'fail', 'fail']))).toEqual({
      status: 'unhealthy',
      failingStreak: 4,
    });
  });

  test('the failures must be consecutive', () => {
    expect(summary(after(['fail', 'fail', 'pass', 'fail', 'fail']))).toEqual({
      status: 'healthy',
      failingStreak: 2,
    });
  });

  test('a healthy service stays healthy until retries failures, then is unhealthy', () => {
    const healthy = after(['pass']);
    expect(summary(after(['fail', 'fail'], false, healthy))).toEqual({ status: 'healthy', failingStreak: 2 });
    expect(summary(after(['fail', 'fail', 'fail'], false, healthy))).toEqual({
      status: 'unhealthy',
      failingStreak: 3,
    });
  });

  test('once healthy, a failure counts even within the start period', () => {
    const healthy = after(['pass'], true);
    expect(summary(after(['fail'], true, healthy))).toEqual({ status: 'healthy', failingStreak: 1 });
    expect(summary(after(['fail', 'fail', 'fail'], true, healthy))).toEqual({
      status: 'unhealthy',
      failingStreak: 3,
    });
  });

  test('start-period failures are not carried past it', () => {
    const starting = after(['fail', 'fail'], true);
    expect(summary(after(['fail', 'fail'], false, starting))).toEqual({
      status: 'starting',
      failingStreak: 2,
    });
  });

  test('retries 1: the first failure after the start period is unhealthy', () => {
    expect(summary(after(['fail'], false, STARTING, { ...CHECK, retries: 1 }))).toEqual({
      status: 'unhealthy',
      failingStreak: 1,
    });
  });

  test('the log keeps the last five probes, newest last', () => {
    const outputs = ['1', '2', '3', '4', '5', '6', '7'];
    const health = outputs.reduce((h, output) => nextHealth(h, CHECK, probe(false, output), false), STARTING);
    expect(health.log.map((entry) => entry.output)).toEqual(['3', '4', '5', '6', '7']);
  });

  test('the health it is given is left as it was', () => {
    const before: HealthState = { status: 'healthy', failingStreak: 1, log: [] };
    const next = nextHealth(before, CHECK, probe(false), false);
    expect(before).toEqual({ status: 'healthy', failingStreak: 1, log: [] });
    expect(next).toMatchObject({ status: 'healthy', failingStreak: 2 });
    expect(next.log).toHaveLength(1);
  });
});
