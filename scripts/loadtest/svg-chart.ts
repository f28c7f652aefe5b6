// A small hand-written SVG line chart (issue 6: "an SVG chart where a picture
// says it better"): x in seconds, one or more series, optional vertical markers
// (load stopped, a deploy). No dependency, readable in any browser or on GitHub.

export interface Series {
  label: string;
  points: Array<[x: number, y: number]>;
}

export interface Marker {
  x: number;
  label: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  markers?: Marker[];
  /** Use a log10 y axis (latencies from 1 ms to 60 s). Values ≤ 0 are drawn at the axis floor. */
  isLogY?: boolean;
}

const WIDTH = 760;
const HEIGHT = 380;
const PAD = { left: 70, right: 20, top: 40, bottom: 70 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

function format(v: number): string {
  if (Math.abs(v) >= 1000) return `${Math.round(v / 100) / 10}k`;
  return String(Math.round(v * 100) / 100);
}

export function lineChart(options: LineChartOptions): string {
  const all = options.series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map(([x]) => x), ...(options.markers ?? []).map((m) => m.x));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const ys = all.map(([, y]) => y);
  let yOf: (y: number) => number;
  const yTicks: number[] = [];
  if (options.isLogY === true) {
    const lo = Math.floor(Math.log10(Math.max(0.1, Math.min(...ys.filter((y) => y > 0), 1))));
    const hi = Math.ceil(Math.log10(Math.max(10, ...ys)));
    yOf = (y) => PAD.top + plotH - ((Math.log10(Math.max(y, 10 ** lo)) - lo) / (hi - lo)) * plotH;
    for (let e = lo; e <= hi; e++) yTicks.push(10 ** e);
  } else {
    const step = niceStep(Math.max(1, ...ys) * 1.1, 5);
    const yMax = step * Math.ceil((Math.max(1, ...ys) * 1.05) / step);
    yOf = (y) => PAD.top + plotH - (y / yMax) * plotH;
    for (let v = 0; v <= yMax + step / 2; v += step) yTicks.push(v);
  }
  const xStep = niceStep(xMax, 8);
  const xOf = (x: number): number => PAD.left + (x / xMax) * plotW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  out.push(`<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(options.title)}</text>`);
  for (const v of yTicks) {
    const y = yOf(v).toFixed(1);
    out.push(`<line x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${PAD.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${format(v)}</text>`);
  }
  for (let x = 0; x <= xMax + xStep / 2; x += xStep) {
    const px = xOf(x).toFixed(1);
    out.push(`<text x="${px}" y="${PAD.top + plotH + 16}" text-anchor="middle">${format(x)}</text>`);
  }
  out.push(`<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${PAD.top + plotH}" stroke="#333"/>`);
  out.push(
    `<line x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH}" stroke="#333"/>`,
  );
  out.push(
    `<text x="${PAD.left + plotW / 2}" y="${PAD.top + plotH + 34}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
  );
  out.push(
    `<text transform="translate(16 ${PAD.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}${options.isLogY === true ? ' (log)' : ''}</text>`,
  );
  for (const m of options.markers ?? []) {
    const px = xOf(m.x).toFixed(1);
    out.push(
      `<line x1="${px}" x2="${px}" y1="${PAD.top}" y2="${PAD.top + plotH}" stroke="#999" stroke-dasharray="4 3"/>`,
    );
    out.push(`<text x="${px}" y="${PAD.top - 4}" text-anchor="middle" fill="#555">${escapeXml(m.label)}</text>`);
  }
  options.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    if (s.points.length > 0) {
      const d = s.points
        .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`)
        .join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"/>`);
    }
    const lx = PAD.left + i * 180;
    const ly = HEIGHT - 14;
    out.push(`<rect x="${lx}" y="${ly - 8}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${lx + 20}" y="${ly - 4}">${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
