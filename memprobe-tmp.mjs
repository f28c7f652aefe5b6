import { readFileSync } from 'node:fs';
const mods = (process.argv[2] || '').split(',').filter(Boolean);
for (const m of mods) await import(m);
await new Promise(r=>setTimeout(r,300));
const s=readFileSync('/proc/self/smaps_rollup','utf8'); const g=k=>Number(s.match(new RegExp(k+':\\s+(\\d+)'))[1])/1024;
console.log(mods.join(',')||'none', (process.memoryUsage().rss/1e6).toFixed(1), 'anon', g('Anonymous').toFixed(1), 'file', (g('Rss')-g('Anonymous')).toFixed(1));
