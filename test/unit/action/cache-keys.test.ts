import { restoreKeys, saveKey } from '../../../src/action/cache.js';

const image = (n: string) => ({ configDigest: `sha256:${n.repeat(64)}`, blobs: [`sha256:${n.repeat(64)}`] });

test('restore looks for the same image names first, then for any entry of this platform', () => {
  const keys = restoreKeys(['redis:7', 'postgres:16']);
  expect(keys.primary).toMatch(
    new RegExp(`^hyper-services-v1-${process.platform}-${process.arch}-[0-9a-f]{16}$`),
  );
  expect(keys.restore).toEqual([
    `${keys.primary}-`,
    `hyper-services-v1-${process.platform}-${process.arch}-`,
  ]);
});

test('image names are a set: order and repeats do not change the keys', () => {
  expect(restoreKeys(['a', 'b', 'a'])).toEqual(restoreKeys(['b', 'a']));
  expect(saveKey(['a', 'b'], [image('1'), image('2')])).toBe(saveKey(['b', 'a'], [image('2'), image('1')]));
});

test('the save key starts with the restore prefix and changes when any image content changes', () => {
  const names = ['redis:7'];
  const key = saveKey(names, [image('1')]);
  expect(key.startsWith(restoreKeys(names).restore[0] as string)).toBe(true);
  expect(key).toMatch(/-[0-9a-f]{16}-[0-9a-f]{16}$/);
  expect(saveKey(names, [image('2')])).not.toBe(key);
  expect(restoreKeys(['redis:8']).primary).not.toBe(restoreKeys(names).primary);
});

test('the save key changes when the service templates change, and not with their order', () => {
  const names = ['postgres:16'];
  const images = [image('1')];
  const withTemplates = saveKey(names, images, ['db-0123456789abcdef', 'cache-fedcba9876543210']);
  expect(withTemplates).not.toBe(saveKey(names, images));
  expect(withTemplates).toBe(saveKey(names, images, ['cache-fedcba9876543210', 'db-0123456789abcdef']));
  expect(saveKey(names, images, ['db-1111111111111111'])).not.toBe(
    saveKey(names, images, ['db-0123456789abcdef']),
  );
});
