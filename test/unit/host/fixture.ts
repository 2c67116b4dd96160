import { readFileSync } from 'node:fs';

/** A file under test/fixtures/host, as text. */
export function hostFixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/host/${name}`, import.meta.url), 'utf8');
}
