// Client sizes, minified and gzipped, next to centrifuge-js and socket.io-client, each bundled
// for the browser by the same esbuild from its npm package. Run from web/ after npm ci:
//   node bench/size.mjs
// It installs the two peers (pinned) into a temporary directory, not into this project.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const client = resolve('client/src/index.js');
const dir = mkdtempSync(join(tmpdir(), 'roomlog-size-'));
try {
  writeFileSync(join(dir, 'package.json'), '{"private":true}');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', 'centrifuge@5.7.4', 'socket.io-client@4.8.4'], { cwd: dir, stdio: 'inherit' });
  const entries = {
    '@roomlog/client (RoomlogClient)': `export { RoomlogClient } from ${JSON.stringify(client)};`,
    '@roomlog/client (everything)': `export * from ${JSON.stringify(client)};`,
    'centrifuge 5.7.4 (Centrifuge)': `export { Centrifuge } from 'centrifuge';`,
    'socket.io-client 4.8.4 (io)': `export { io } from 'socket.io-client';`,
  };
  console.log('| bundle | minified | min+gzip |\n| --- | ---: | ---: |');
  for (const [name, source] of Object.entries(entries)) {
    const out = join(dir, 'out.js');
    await esbuild.build({ stdin: { contents: source, resolveDir: dir }, bundle: true, minify: true, format: 'esm', platform: 'browser', outfile: out, logLevel: 'error' });
    const b = readFileSync(out);
    console.log(`| ${name} | ${(b.length / 1024).toFixed(1)} KiB | ${(gzipSync(b, { level: 9 }).length / 1024).toFixed(1)} KiB |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
