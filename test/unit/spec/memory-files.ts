/** A readFile over a map of paths to texts, as the compose parser is given one; a missing path is ENOENT. */
export function memoryFiles(entries: Record<string, string>): (path: string) => string {
  const map = new Map(Object.entries(entries));
  return (path) => {
    const text = map.get(path);
    if (text === undefined) {
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
    }
    return text;
  };
}
