import { intOption, parseArgs, UsageError } from '../../../src/cli/args.js';
import { formatTable } from '../../../src/cli/table.js';

const RUN = [
  { name: 'name', value: true },
  { name: 'publish', short: 'p', value: true, multiple: true },
  { name: 'env', short: 'e', value: true, multiple: true },
  { name: 'memory', value: true },
];

describe('parseArgs', () => {
  test('options before the image; everything after it is the command', () => {
    const parsed = parseArgs(
      ['--name', 'web', '-p', '8080:80', '-p9090:90', '-e', 'A=1', 'img', '-p', 'x', '--name'],
      RUN,
      1,
    );
    expect(parsed.options).toEqual({ name: 'web', publish: ['8080:80', '9090:90'], env: ['A=1'] });
    expect(parsed.positionals).toEqual(['img', '-p', 'x', '--name']);
  });
  test('--opt=value', () => {
    expect(parseArgs(['--memory=256', 'img'], RUN, 1).options.memory).toBe('256');
  });
  test('-- ends the options', () => {
    expect(parseArgs(['--', '--name'], RUN).positionals).toEqual(['--name']);
  });
  test('unknown options and missing values are usage errors', () => {
    expect(() => parseArgs(['--bogus', 'img'], RUN)).toThrow(new UsageError('unknown option --bogus'));
    expect(() => parseArgs(['--name'], RUN)).toThrow('option --name needs a value');
  });
  test('intOption checks the number', () => {
    expect(intOption(parseArgs(['--memory', '256'], RUN), 'memory', 512, 64)).toBe(256);
    expect(intOption(parseArgs([], RUN), 'memory', 512, 64)).toBe(512);
    expect(() => intOption(parseArgs(['--memory', '1g'], RUN), 'memory', 512, 64)).toThrow(
      '"1g" is not a whole number',
    );
  });
});

test('formatTable aligns columns', () => {
  expect(
    formatTable(
      ['NAME', 'STATE'],
      [
        ['web', 'running'],
        ['database', 'exited (0)'],
      ],
    ),
  ).toBe('NAME       STATE\nweb        running\ndatabase   exited (0)');
});
