// Bundles the Electron side into dist/electron/ with esbuild:
//   main.js          electron/main.ts          ESM, Electron's main process
//   preload.cjs      electron/preload.ts       CommonJS: a sandboxed preload cannot be ESM and may require only 'electron'
//   engine-entry.js  main/jobs/engine-entry.ts ESM, run in a utility process
// Our TypeScript is bundled; packages in node_modules stay external and load
// from node_modules at run time (better-sqlite3's and the engine's .node files
// are loaded from disk, outside the asar archive). The output sits two folders
// below the app root, as the sources do, so paths the code builds from
// import.meta.url (../../build/native, ../../assets) still point at the root.
//
// Usage: node scripts/build-electron.mjs [--out <dir>] [--minify]
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const ENTRIES = {
  main: 'electron/main.ts',
  preload: 'electron/preload.ts',
  engine: 'main/jobs/engine-entry.ts',
};

export async function buildElectron({ outDir = path.join(root, 'dist', 'electron'), minify = false } = {}) {
  for (const file of Object.values(ENTRIES)) {
    if (!existsSync(path.join(root, file))) throw new Error(`build-electron: ${file} is missing`);
  }
  const common = {
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: 'node22',
    sourcemap: 'linked',
    minify,
    logLevel: 'warning',
    legalComments: 'none',
  };
  await Promise.all([
    build({
      ...common,
      entryPoints: { main: ENTRIES.main, 'engine-entry': ENTRIES.engine },
      outdir: outDir,
      format: 'esm',
      packages: 'external',
      external: ['electron'],
      outExtension: { '.js': '.js' },
    }),
    build({
      ...common,
      entryPoints: [ENTRIES.preload],
      outfile: path.join(outDir, 'preload.cjs'),
      format: 'cjs',
      // Sandboxed: everything but 'electron' must be inside the one file.
      external: ['electron'],
    }),
  ]);
  return {
    main: path.join(outDir, 'main.js'),
    preload: path.join(outDir, 'preload.cjs'),
    engine: path.join(outDir, 'engine-entry.js'),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out');
  const outDir = outAt >= 0 && args[outAt + 1] ? path.resolve(args[outAt + 1]) : undefined;
  buildElectron({ outDir, minify: args.includes('--minify') })
    .then((out) => console.log(`built ${Object.values(out).map((p) => path.relative(root, p)).join(', ')}`))
    .catch((err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
