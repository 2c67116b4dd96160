import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ImageReferenceError } from '../images/reference.js';
import { PortSpecError } from '../network/ports.js';
import { SpecError } from './container.js';

/** What a YAML value turned out to be, worded for "expected a list, got a string". */
export type YamlKind = 'a map' | 'a list' | 'a string' | 'a number' | 'a boolean' | 'null';

interface YamlFile {
  source: string;
  doc: Document;
  lines: LineCounter;
  /** Applied to every string value read (Compose's variable interpolation); may throw a SpecError. */
  transform: (text: string) => string;
}

export interface YamlEntry {
  key: string;
  /** Located at its key's line: where a reader looks for `db:` or `ports:`. */
  value: YamlValue;
}

/**
 * Parses YAML text into its root value. Merge keys (`<<: *anchor`) and aliases
 * are followed; a syntax error becomes `SOURCE: YAML error at line N: REASON`.
 */
export function parseYaml(
  text: string,
  source: string,
  rootPath: string,
  transform: (text: string) => string = (t) => t,
): YamlValue {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, merge: true, prettyErrors: false });
  const [error] = doc.errors;
  if (error) {
    const line = lines.linePos(error.pos[0]).line;
    throw new SpecError(`${source}: YAML error at line ${line}: ${error.message}`);
  }
  const file: YamlFile = { source, doc, lines, transform };
  const root = doc.contents as Node | null;
  return new YamlValue(file, root, rootPath, lineOf(file, root) ?? 1);
}

function lineOf(file: YamlFile, node: Node | null): number | undefined {
  return node?.range ? file.lines.linePos(node.range[0]).line : undefined;
}

function keyName(key: Node | null): string | undefined {
  if (!isScalar(key) || key.value === null || typeof key.value === 'object' || typeof key.value === 'symbol')
    return undefined;
  return typeof key.value === 'string' ? key.value : String(key.source ?? key.value);
}

/** One value in a YAML document, with the key path and line that error messages name. */
export class YamlValue {
  readonly node: Node | null;

  constructor(
    private readonly file: YamlFile,
    node: Node | null,
    readonly path: string,
    readonly line: number | undefined,
  ) {
    this.node = isAlias(node) ? ((node.resolve(file.doc) as Node | undefined) ?? null) : node;
  }

  get source(): string {
    return this.file.source;
  }

  /** `services.db.ports[0] (line 5)`; empty for the top level of a file. */
  get where(): string {
    if (!this.path) return '';
    return this.line === undefined ? this.path : `${this.path} (line ${this.line})`;
  }

  /** An error about this value: `SOURCE: PATH (line N): MESSAGE`. */
  error(message: string): SpecError {
    const where = this.where;
    return new SpecError(`${this.file.source}: ${where ? `${where}: ` : ''}${message}`);
  }

  /** Runs a parser of this value's text, locating the error it throws about that text. */
  attempt<T>(parse: () => T): T {
    try {
      return parse();
    } catch (error: unknown) {
      if (
        error instanceof SpecError ||
        error instanceof PortSpecError ||
        error instanceof ImageReferenceError
      )
        throw this.error(error.message);
      throw error;
    }
  }

  get kind(): YamlKind {
    const node = this.node;
    if (isMap(node)) return 'a map';
    if (isSeq(node)) return 'a list';
    if (!isScalar(node) || node.value === null || node.value === undefined) return 'null';
    if (typeof node.value === 'number' || typeof node.value === 'bigint') return 'a number';
    if (typeof node.value === 'boolean') return 'a boolean';
    return 'a string';
  }

  get isNull(): boolean {
    return this.kind === 'null';
  }

  expected(what: string): SpecError {
    return this.error(`expected ${what}, got ${this.kind}`);
  }

  /** The entries of a map, in order, merge keys expanded (explicit keys win). */
  entries(merging: ReadonlySet<Node> = new Set()): YamlEntry[] {
    const node = this.node;
    if (!isMap(node)) throw this.expected('a map');
    if (merging.has(node)) throw this.error('a merge key (<<) refers to a map that contains it');
    const explicit = new Set(node.items.map((pair) => keyName(pair.key as Node | null)));
    const entries = new Map<string, YamlEntry>();
    for (const pair of node.items) {
      const key = pair.key as Node | null;
      if (isScalar(key) && typeof key.value === 'symbol') {
        for (const merged of this.mergeSources(pair.value as Node | null, lineOf(this.file, key))) {
          for (const entry of merged.entries(new Set([...merging, node]))) {
            if (!explicit.has(entry.key) && !entries.has(entry.key)) entries.set(entry.key, entry);
          }
        }
        continue;
      }
      const name = keyName(key);
      if (name === undefined) throw this.error('keys must be plain names');
      const child = this.path ? `${this.path}.${name}` : name;
      const value = new YamlValue(this.file, pair.value as Node | null, child, lineOf(this.file, key));
      entries.set(name, { key: name, value });
    }
    return [...entries.values()];
  }

  /** What a `<<` key merges: an alias to a map, or a list of them; read with this map's path. */
  private mergeSources(node: Node | null, line: number | undefined): YamlValue[] {
    const merge = new YamlValue(this.file, node, `${this.path}.<<`, line);
    const sources = isSeq(merge.node) ? merge.items().map((item) => item.node) : [merge.node];
    return sources.map((source) => {
      if (!isMap(source)) throw merge.expected('a map or a list of maps to merge');
      return new YamlValue(this.file, source, this.path, line);
    });
  }

  /** The entries of a map whose keys must all be in `valid`, by key. */
  fields(valid: readonly string[]): Map<string, YamlValue> {
    const fields = new Map<string, YamlValue>();
    for (const entry of this.entries()) {
      if (!valid.includes(entry.key)) throw entry.value.unknownKey(valid);
      fields.set(entry.key, entry.value);
    }
    return fields;
  }

  items(): YamlValue[] {
    const node = this.node;
    if (!isSeq(node)) throw this.expected('a list');
    return node.items.map((item, index) => {
      const child = item as Node | null;
      return new YamlValue(this.file, child, `${this.path}[${index}]`, lineOf(this.file, child) ?? this.line);
    });
  }

  /** `SOURCE: services.db.imgae (line 3) is not a known key; valid keys: image, ...`. */
  unknownKey(valid: readonly string[]): SpecError {
    return new SpecError(`${this.source}: ${this.where} is not a known key; valid keys: ${valid.join(', ')}`);
  }

  /** A string value, after the file's transform. */
  string(what = 'a string'): string {
    const node = this.node;
    if (this.kind !== 'a string' || !isScalar(node)) throw this.expected(what);
    const text = String(node.value);
    return this.attempt(() => this.file.transform(text));
  }

  /** A string, number or boolean as written (`1.10` stays "1.10"), for values that end up as text. */
  text(what = 'a string'): string {
    const node = this.node;
    if (this.kind === 'a string') return this.string();
    if ((this.kind === 'a number' || this.kind === 'a boolean') && isScalar(node))
      return node.source ?? String(node.value);
    throw this.expected(what);
  }

  boolean(): boolean {
    const node = this.node;
    if (this.kind === 'a boolean' && isScalar(node)) return node.value === true;
    const text = this.kind === 'a string' ? this.string() : undefined;
    if (text === 'true' || text === 'false') return text === 'true';
    throw this.expected('true or false');
  }

  /** A list of strings, or one string taken as a list of one. */
  stringOrList(): string[] {
    return isSeq(this.node) ? this.items().map((item) => item.text()) : [this.text()];
  }
}
