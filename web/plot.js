// Line plots drawn as SVG by the page itself (no library, no inline style: classes only, styled
// by admin.css). `plot(svg, series, options)` replaces the svg's content.
//
// series: [{ name, points: [[timeMs, value|null], ...] }] (null: no value in that bucket, the
// line breaks there); options: { unit: '' | 's' | 'x', min: 0 }.

const W = 400;
const H = 190;
const PAD = { left: 48, right: 8, top: 24, bottom: 24 };

// The SVG namespace, taken from the page's own <svg> elements (no URL in this file).
const ns = (svg) => svg.namespaceURI;

function el(svg, name, attrs, text) {
  const node = document.createElementNS(ns(svg), name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// 1, 2 or 5 times a power of ten, at least `span / 4`.
function step(span) {
  if (!(span > 0)) return 1;
  const raw = span / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function formatValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const abs = Math.abs(v);
  const n = abs >= 100 ? v.toFixed(0) : abs >= 10 ? v.toFixed(1) : abs >= 1 ? v.toFixed(2) : v.toFixed(3).replace(/\.?0+$/, '') || '0';
  return unit === 's' ? `${n} s` : unit === 'x' ? `${n}×` : n;
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

export function plot(svg, series, options = {}) {
  const unit = options.unit ?? '';
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const all = series.flatMap((s) => s.points);
  const values = all.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v));
  const times = all.map((p) => p[0]);
  svg.dataset.points = String(values.length);
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  svg.append(el(svg, 'line', { class: 'axis', x1: x0, y1: y0, x2: x1, y2: y0 }));
  svg.append(el(svg, 'line', { class: 'axis', x1: x0, y1: y0, x2: x0, y2: y1 }));
  if (times.length === 0) return;
  const tMin = Math.min(...times);
  const tMax = Math.max(...times);
  const vMax = Math.max(options.min ?? 0, ...values);
  const s = step(vMax || 1);
  const top = Math.max(s, Math.ceil((vMax || 1) / s) * s);
  const x = (t) => (tMax === tMin ? (x0 + x1) / 2 : x0 + ((t - tMin) / (tMax - tMin)) * (x1 - x0));
  const y = (v) => y0 - (v / top) * (y0 - y1);
  for (let v = 0; v <= top + s / 2; v += s) {
    svg.append(el(svg, 'line', { class: 'grid', x1: x0, y1: y(v), x2: x1, y2: y(v) }));
    svg.append(el(svg, 'text', { x: x0 - 4, y: y(v) + 4, 'text-anchor': 'end' }, formatValue(v, unit)));
  }
  for (const [t, anchor] of [[tMin, 'start'], [(tMin + tMax) / 2, 'middle'], [tMax, 'end']]) {
    svg.append(el(svg, 'text', { x: x(t), y: H - 6, 'text-anchor': anchor }, clock(t)));
  }
  series.forEach((serie, i) => {
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(el(svg, 'polyline', { class: `line s${i}`, points: run.join(' ') }));
      if (run.length === 1) {
        const [cx, cy] = run[0].split(',');
        svg.append(el(svg, 'circle', { class: `dot s${i}`, cx, cy, r: 2.5 }));
      }
      run = [];
    };
    for (const [t, v] of serie.points) {
      if (v === null || !Number.isFinite(v)) flush();
      else run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
    flush();
    const last = [...serie.points].reverse().find((p) => p[1] !== null && Number.isFinite(p[1]));
    const label = `${serie.name}${last ? `: ${formatValue(last[1], unit)}` : ''}`;
    svg.append(el(svg, 'text', { class: `key s${i}`, x: x0 + 4 + i * 118, y: 15 }, label));
  });
  if (values.length === 0) {
    svg.append(el(svg, 'text', { class: 'empty', x: (x0 + x1) / 2, y: (y0 + y1) / 2, 'text-anchor': 'middle' },
      'nothing in this window'));
  }
}
