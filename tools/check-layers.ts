// `npm run check` step: fails on an import cycle between folders of src/ or
// an import that bypasses a folder's index.ts. `--graph` prints who imports whom.
import { checkLayers, folderGraph } from './layers.ts';

const root = new URL('../src', import.meta.url).pathname;
if (process.argv.includes('--graph')) {
  for (const line of folderGraph(root)) console.log(line);
  process.exit(0);
}
const { bypasses, cycles } = checkLayers(root);
for (const b of bypasses)
  console.error(`bypass: src/${b.file} imports src/${b.target} (use src/${b.to}/index.ts)`);
for (const cycle of cycles) console.error(`cycle: ${cycle.join(' ↔ ')}`);
if (bypasses.length > 0 || cycles.length > 0) process.exit(1);
console.log('layers: no cycles between folders, every import goes through index.ts');
