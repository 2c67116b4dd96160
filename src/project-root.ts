import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout this code runs from (the action's own repository, or a clone
 * used by the CLI): the nearest directory upwards holding guest/build.sh.
 * Works the same from src/ under jest and from the ncc bundles in dist/.
 */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'guest', 'build.sh'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the hyper-services checkout (no guest/build.sh above this file)');
    dir = parent;
  }
}
