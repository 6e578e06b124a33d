// Builds the editor page and the audit page into dist/ (committed, embedded in roomlog by web/embed.go). The output
// depends only on the sources and the locked versions: .ci/run rebuilds it and fails on a diff.
import * as esbuild from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });
for (const [entry, out] of [['main.js', 'editor.js'], ['audit.js', 'audit.js']]) {
  await esbuild.build({
    entryPoints: [join(here, 'src', entry)],
    outfile: join(dist, 'assets', out),
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    legalComments: 'none',
    logLevel: 'warning',
  });
}
// The stylesheet and the service worker minified too (the worker stays a classic script); the
// page's line breaks and indentation collapsed to the one space HTML renders them as.
await esbuild.build({
  entryPoints: [join(here, 'src', 'style.css')],
  outfile: join(dist, 'assets', 'style.css'),
  minify: true,
  logLevel: 'warning',
});
await esbuild.build({
  entryPoints: [join(here, 'src', 'sw.js')],
  outfile: join(dist, 'sw.js'),
  minify: true,
  target: 'es2020',
  legalComments: 'none',
  logLevel: 'warning',
});
for (const page of ['index.html', 'audit.html']) {
  const html = readFileSync(join(here, 'src', page), 'utf8');
  writeFileSync(join(dist, page), html.replace(/\n\s*/g, ' ').trim() + '\n');
}
