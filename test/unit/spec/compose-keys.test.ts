import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { COMPOSE_SPEC_SCHEMA } from '../../../src/spec/compose-schema.js';
import { KEY_TABLES, type KeyRule } from '../../../src/spec/compose-keys.js';

type Schema = {
  properties?: Record<string, Schema>;
  patternProperties?: Record<string, Schema>;
  oneOf?: Schema[];
  items?: Schema;
  type?: string | string[];
};

const schema = COMPOSE_SPEC_SCHEMA as unknown as Schema & { $defs: Record<string, Schema> };
const defs = schema.$defs;

/** The branch of a oneOf that is a map. */
function mapBranch(node: Schema): Schema {
  const branch = (node.oneOf ?? [node]).find(
    (b) => b.type === 'object' || b.properties || b.patternProperties,
  );
  if (!branch) throw new Error('no map branch');
  return branch;
}

/** The schema of the values of a map keyed by name (patternProperties). */
function named(node: Schema): Schema {
  const [value] = Object.values(mapBranch(node).patternProperties ?? {});
  if (!value) throw new Error('no named entries');
  return mapBranch(value);
}

const keys = (node: Schema): string[] => Object.keys(node.properties ?? {}).sort();
const service = defs.service as Schema;
const serviceProperty = (name: string): Schema => service.properties?.[name] as Schema;
const resources = defs.deployment?.properties?.resources as Schema;

/** Where each table's keys are in the specification's schema. */
const SCHEMA_KEYS: Record<string, string[]> = {
  '(top level)': keys(schema),
  'services.NAME': keys(service),
  'services.NAME.deploy': keys(defs.deployment as Schema),
  'services.NAME.deploy.resources.limits / reservations': [
    ...new Set([
      ...keys(resources.properties?.limits as Schema),
      ...keys(resources.properties?.reservations as Schema),
    ]),
  ].sort(),
  'services.NAME.healthcheck': keys(defs.healthcheck as Schema),
  'services.NAME.depends_on.NAME': keys(named(serviceProperty('depends_on'))),
  'services.NAME.ports[]': keys(mapBranch(serviceProperty('ports').items as Schema)),
  'services.NAME.volumes[]': keys(mapBranch(serviceProperty('volumes').items as Schema)),
  'services.NAME.networks.NAME': keys(named(serviceProperty('networks'))),
  'services.NAME.secrets[] / configs[]': keys(mapBranch(defs.service_config_or_secret?.items as Schema)),
  'networks.NAME': keys(defs.network as Schema),
  'volumes.NAME': keys(defs.volume as Schema),
  'secrets.NAME': keys(defs.secret as Schema),
  'configs.NAME': keys(defs.config as Schema),
};

describe('the answer to every key of the Compose Specification', () => {
  test.each(Object.keys(SCHEMA_KEYS))('%s: every key the schema has, and no other', (where) => {
    expect(Object.keys(KEY_TABLES[where] ?? {}).sort()).toEqual(SCHEMA_KEYS[where]);
  });

  test('every key that is not simply honoured says why', () => {
    const silent = Object.entries(KEY_TABLES).flatMap(([where, table]) =>
      Object.entries(table)
        .filter(([, rule]) => rule.answer !== 'honoured' && !rule.why)
        .map(([key]) => `${where}.${key}`),
    );
    expect(silent).toEqual([]);
  });
});

const ANSWER_WORDS: Record<KeyRule['answer'], string> = {
  honoured: 'honoured',
  vm: 'honoured, VM meaning',
  ignored: 'ignored, with a warning',
  refused: 'refused',
};

/** The docs' table, made from KEY_TABLES. */
function keyTableMarkdown(): string {
  return Object.entries(KEY_TABLES)
    .map(([where, table]) => {
      const rows = Object.entries(table).map(
        ([key, rule]) =>
          `| \`${key}\` | ${ANSWER_WORDS[rule.answer]} | ${(rule.why ?? '').replaceAll('|', '\\|')}${rule.harmless ? ` (accepted: ${rule.harmless.map((v) => `\`${v}\``).join(', ')})` : ''} |`,
      );
      return [
        `### \`${where}\``,
        '',
        '| key | answer | what it does here, or why |',
        '| --- | --- | --- |',
        ...rows,
      ].join('\n');
    })
    .join('\n\n');
}

const DOC = path.join(process.cwd(), 'docs', 'compose.md');
const BEGIN = '<!-- key table: made by test/unit/spec/compose-keys.test.ts; UPDATE_DOCS=1 rewrites it -->';
const END = '<!-- end of key table -->';

test('docs/compose.md shows the table the code acts on', () => {
  const doc = readFileSync(DOC, 'utf8');
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  expect(start).toBeGreaterThan(-1);
  expect(end).toBeGreaterThan(start);
  const table = `${BEGIN}\n\n${keyTableMarkdown()}\n\n`;
  if (process.env.UPDATE_DOCS === '1') writeFileSync(DOC, doc.slice(0, start) + table + doc.slice(end));
  expect(doc.slice(start, end)).toBe(table);
});
