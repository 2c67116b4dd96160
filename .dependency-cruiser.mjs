// The layers of docs/architecture.md, top first. A module may import only
// layers below its own; folders on one row may not import each other.
export const LAYERS = [
  { name: 'entry', paths: ['src/main\\.ts$', 'src/post\\.ts$', 'src/cli\\.ts$'] },
  { name: 'doors', paths: ['src/action/', 'src/cli/'] },
  // The Docker Engine API: a front door of its own, which `hyper serve` (a CLI command) starts.
  { name: 'api', paths: ['src/api/'] },
  { name: 'engine', paths: ['src/engine/'] },
  { name: 'spec', paths: ['src/spec/'] },
  { name: 'storage-network', paths: ['src/storage/', 'src/network/'] },
  { name: 'vm', paths: ['src/vm/'] },
  { name: 'guest', paths: ['src/guest/'] },
  { name: 'images', paths: ['src/images/'] },
  { name: 'install', paths: ['src/install/'] },
  { name: 'tools-host', paths: ['src/tools/', 'src/host/'] },
  {
    name: 'shared',
    paths: ['src/files\\.ts$', 'src/github\\.ts$', 'src/project-root\\.ts$', 'src/sizes\\.ts$'],
  },
  { name: 'process', paths: ['src/process/'] },
  { name: 'types', paths: ['src/types/'] },
  { name: 'errors', paths: ['src/errors\\.ts$'] },
];

const anchored = (paths) => paths.map((p) => `^${p}`);

function layerRules() {
  const rules = [];
  LAYERS.forEach((layer, index) => {
    const above = LAYERS.slice(0, index).flatMap((upper) => anchored(upper.paths));
    if (above.length > 0) {
      rules.push({
        name: `layer-up-from-${layer.name}`,
        comment: `${layer.name} may import only the layers below it`,
        severity: 'error',
        from: { path: anchored(layer.paths) },
        to: { path: above },
      });
    }
    // Folders sharing a row are independent: importing a sibling means one of them belongs lower.
    layer.paths.forEach((own) => {
      const siblings = layer.paths.filter((other) => other !== own);
      if (siblings.length === 0) return;
      rules.push({
        name: `layer-sideways-from-${layer.name}`,
        comment: `folders of ${layer.name} may not import each other`,
        severity: 'error',
        from: { path: `^${own}` },
        to: { path: anchored(siblings) },
      });
    });
  });
  return rules;
}

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'modules in src/ may not import each other in a cycle, type-only imports included',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that cannot be resolved would escape the layer rules',
      severity: 'error',
      from: { path: '^src/' },
      // dockerode is never installed: its types (@types/dockerode) describe the Engine API's JSON shapes.
      to: { couldNotResolve: true, pathNot: '^dockerode$' },
    },
    {
      name: 'layer-unassigned',
      comment: 'every module in src/ belongs to a layer of LAYERS, or the rules would not see it',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.flatMap((layer) => anchored(layer.paths)) },
      to: {},
    },
    ...layerRules(),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a type belongs to the layer that owns it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // ESM-only packages (@octokit/rest) export only under the import condition.
    enhancedResolveOptions: {
      extensions: ['.ts', '.js'],
      exportsFields: ['exports'],
      conditionNames: ['import', 'node', 'default'],
    },
  },
};
