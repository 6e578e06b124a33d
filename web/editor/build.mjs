// Builds the editor page into dist/ (committed, embedded in roomlog by web/embed.go). The output
// depends only on the sources and the locked versions: .ci/run rebuilds it and fails on a diff.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });
await esbuild.build({
  entryPoints: [join(here, 'src', 'main.js')],
  outfile: join(dist, 'assets', 'editor.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(dist, 'index.html'));
copyFileSync(join(here, 'src', 'style.css'), join(dist, 'assets', 'style.css'));
copyFileSync(join(here, 'src', 'sw.js'), join(dist, 'sw.js'));
