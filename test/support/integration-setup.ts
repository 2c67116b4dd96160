import { beforeAll } from '@jest/globals';
import { forgetServiceTemplates } from './templates.js';

// Every test file starts with no service templates in the shared cache dir:
// `up` keeps one for each service it sees healthy, and a later file with a
// service of the same name and key would otherwise resume from it, so a
// file's results would depend on which files ran before it. Files that test
// templates make their own.
beforeAll(() => forgetServiceTemplates());
