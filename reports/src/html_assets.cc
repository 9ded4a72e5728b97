// report.html's style sheet and script, inlined into every page so that the file needs nothing
// else (no network: the page's Content-Security-Policy forbids any fetch). The script builds the
// whole page from the embedded data with DOM calls and textContent only, so text from records
// (messages with <, &, quotes) is never parsed as HTML. Axes come from the data, never a list.
#include "html_assets.h"

namespace qlc::reports {

const char* const kReportHtmlCss = R"CSS(
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 12px 20px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .env { color: #c9d1e0; font-size: 13px; }
.banner { background: #fff3cd; color: #664d03; padding: 8px 20px; border-bottom: 1px solid #e8d9a8; }
main { padding: 12px 20px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px 14px;
          margin-bottom: 14px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.counts span { display: inline-block; margin: 0 14px 4px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
          vertical-align: -1px; margin-right: 4px; }
.filters label { display: inline-block; margin: 0 14px 6px 0; font-size: 13px; }
.filters select { font: inherit; margin-left: 4px; }
.filters .constant { color: #5b6475; font-size: 13px; margin-top: 4px; }
.layout { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 14px; align-items: start; }
@media (max-width: 1000px) { .layout { grid-template-columns: 1fr; } }
.scroll { overflow-x: auto; }
table.heat { border-collapse: collapse; font-size: 12px; }
table.heat th { font-weight: 600; text-align: left; padding: 3px 6px; white-space: nowrap;
                background: #eef1f5; border: 1px solid #dde1e7; }
table.heat td { border: 1px solid #dde1e7; padding: 3px; vertical-align: top; min-width: 34px; }
table.heat th.corner { color: #5b6475; font-weight: 500; white-space: pre-line; }
table.heat th.col { white-space: pre-line; text-align: center; vertical-align: bottom; }
.case { width: 20px; height: 20px; border: 0; border-radius: 3px; margin: 1px; padding: 0;
        cursor: pointer; color: #fff; font: 700 12px/20px system-ui, sans-serif; text-align: center;
        vertical-align: top; }
.case.mispredicted { box-shadow: inset 0 0 0 2px #111; }
.case.selected { outline: 3px solid #1f6feb; outline-offset: 1px; }
.case:focus-visible { outline: 3px solid #1f6feb; }
.legend { margin-top: 8px; font-size: 12px; color: #3a4252; }
.legend span { margin-right: 12px; white-space: nowrap; }
#details h3 { font-size: 13px; margin: 0 0 8px; word-break: break-all; font-family: ui-monospace, monospace; }
#details .empty { color: #5b6475; }
#details dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 10px; margin: 0 0 8px; font-size: 13px; }
#details dt { color: #5b6475; }
#details dd { margin: 0; word-break: break-word; }
#details pre { background: #f3f4f7; border: 1px solid #e1e4ea; border-radius: 4px; padding: 6px;
               white-space: pre-wrap; word-break: break-word; font-size: 12px; margin: 0 0 8px; }
#details h4 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #5b6475; margin: 10px 0 4px; }
.pill { display: inline-block; padding: 0 6px; border-radius: 9px; color: #fff; font-size: 12px; }
.chart { margin-bottom: 6px; }
.chart .title { font-size: 13px; font-weight: 600; margin: 4px 0; }
.chart svg { display: block; }
.chart rect.bar { cursor: pointer; }
.chart rect.bar.selected { stroke: #1f6feb; stroke-width: 2; }
.chart text { font: 11px system-ui, sans-serif; fill: #5b6475; }
.note { color: #5b6475; font-size: 12px; }
)CSS";

// What both pages' scripts share (report.html, compatibility.html), written before each: the
// colour of each outcome and a small DOM builder (text only through textContent).
const char* const kHtmlJsCommon = R"JS(
'use strict';
const COLORS = {
  ok: '#2e9e4f', skipped: '#aab0b8', dtype_mismatch: '#e8743b', unsupported_dtype: '#d64541',
  unsupported_op: '#a93226', nan_loss: '#e0a100', no_learning: '#b7950b', oom: '#8e44ad',
  cuda_error: '#b03a78', crash: '#6e2c00', timeout: '#2f5d8a', harness_error: '#17202a',
  machine_fault: '#5d6d7e'
};
const color = (o) => COLORS[o] || '#7f8c8d';
const num = (v) => (typeof v === 'number' ? v : NaN);  // records write NaN as "nan"
const fmt = (v, digits) => (isFinite(num(v)) ? num(v).toFixed(digits) : String(v));

function el(tag, props, children) {
  const e = document.createElement(tag);
  for (const k in props || {}) {
    if (k === 'text') e.textContent = props[k];
    else if (k === 'className') e.className = props[k];
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), props[k]);
    else e.setAttribute(k, props[k]);
  }
  for (const c of children || []) if (c != null) e.append(c);
  return e;
}
)JS";

const char* const kReportHtmlJs = R"JS(
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const report = data.report;
  const cases = report.cases;
  const axisNames = data.axis_order;
  const app = document.getElementById('app');
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  };

  // An axis value as people name it: the weights with "+dq" when double quantization is on.
  function axisValue(c, name) {
    const axes = c.axes || {};
    if (name === 'weights' && axes.double_quant === 'true') return axes.weights + '+dq';
    return name in axes ? axes[name] : '-';
  }
  const valuesOf = (name) => {
    const seen = [];
    for (const c of cases) { const v = axisValue(c, name); if (!seen.includes(v)) seen.push(v); }
    return seen;
  };
  const varying = axisNames.filter((n) => valuesOf(n).length > 1 && n !== 'double_quant');
  const constant = axisNames.filter((n) => valuesOf(n).length === 1);
  const pick = (wanted, fallback) => {
    const have = wanted.filter((n) => axisNames.includes(n));
    return have.length ? have : fallback;
  };
  const state = {
    filters: {},
    rows: pick(['weights', 'compute_dtype'], axisNames.slice(0, 1)),
    cols: pick(['param_dtype', 'optimizer'], axisNames.slice(1, 2)),
    selected: -1
  };
  const visible = (c) => Object.keys(state.filters).every((n) => state.filters[n] === '' ||
                                                           axisValue(c, n) === state.filters[n]);
  const mispredicted = (c) => c.as_predicted === false;

  // Header: the machine and the counts.
  const env = report.environment || {};
  const facts = env.facts || {};
  const get = (o, path) => path.reduce((a, k) => (a && typeof a === 'object' ? a[k] : undefined), o);
  const envParts = [];
  const add = (label, v) => { if (v !== undefined && v !== null && v !== '') envParts.push(label + ' ' + v); };
  add('CPU', get(facts, ['cpu', 'model']));
  add('GPU', get(facts, ['cuda', 'available']) ? get(facts, ['cuda', 'device_name']) +
      ' (cc ' + get(facts, ['cuda', 'compute_capability']) + ')' : 'none');
  add('LibTorch', get(facts, ['libtorch', 'version']));
  add('OS', get(facts, ['os', 'name']));
  add('revision', get(facts, ['qlora_compat', 'git_revision']));
  add('environment', env.id);
  document.title = 'qlora-compat report' + (env.id ? ' · ' + env.id : '');
  app.append(el('header', {}, [el('h1', { text: 'qlora-compat report' }),
                               el('div', { className: 'env', text: envParts.join(' · ') })]));
  if (report.truncated_tail) {
    app.append(el('div', { className: 'banner', text:
      'This run was cut short: its last, unfinished record is left out.' }));
  }
  const main = el('main');
  app.append(main);

  const counts = {};
  for (const c of cases) counts[c.outcome] = (counts[c.outcome] || 0) + 1;
  const wrong = cases.filter(mispredicted).length;
  const summary = el('section', { className: 'counts' }, [el('h2', { text:
    cases.length + ' case' + (cases.length === 1 ? '' : 's') +
    (wrong ? ' · ' + wrong + ' not as predicted' : '') })]);
  for (const o of Object.keys(counts)) {
    summary.append(el('span', {}, [el('span', { className: 'swatch', style: 'background:' + color(o) }),
                                  o + ' ' + counts[o]]));
  }
  main.append(summary);
  if (!cases.length) {
    summary.append(el('p', { className: 'note', text: 'No case has a record in this run.' }));
    return;
  }

  // Filters (one per axis whose value varies) and the table layout.
  const filters = el('section', { className: 'filters' }, [el('h2', { text: 'Filters and layout' })]);
  for (const n of varying) {
    const sel = el('select', { 'data-axis': n, onchange: (e) => { state.filters[n] = e.target.value; render(); } },
                   [el('option', { value: '', text: 'all' })]);
    for (const v of valuesOf(n)) sel.append(el('option', { value: v, text: v }));
    filters.append(el('label', {}, [n, sel]));
  }
  const layoutSelect = (key, index) => {
    const sel = el('select', { 'data-layout': key + index, onchange: (e) => {
      const list = state[key].slice();
      if (e.target.value) list[index] = e.target.value; else list.splice(index, 1);
      state[key] = list.filter((v, i) => v && list.indexOf(v) === i);
      render();
    } }, [el('option', { value: '', text: '—' })]);
    for (const n of axisNames.filter((a) => a !== 'double_quant')) {
      const o = el('option', { value: n, text: n });
      if (state[key][index] === n) o.selected = true;
      sel.append(o);
    }
    return sel;
  };
  filters.append(el('div', {}, [el('label', {}, ['rows', layoutSelect('rows', 0), layoutSelect('rows', 1)]),
                                el('label', {}, ['columns', layoutSelect('cols', 0), layoutSelect('cols', 1)])]));
  if (constant.length) {
    filters.append(el('div', { className: 'constant', text: 'Every case: ' +
      constant.map((n) => n + ' ' + axisValue(cases[0], n)).join(' · ') }));
  }
  main.append(filters);

  const layout = el('div', { className: 'layout' });
  const heat = el('section', {}, []);
  const details = el('section', { id: 'details' }, [el('p', { className: 'empty', text:
    'Click a case in the matrix or a bar in the charts to see its details.' })]);
  layout.append(heat, details);
  main.append(layout);
  const charts = el('section', {}, []);
  main.append(charts);

  function key(c, names) { return names.map((n) => axisValue(c, n)).join(' · '); }

  function renderHeat() {
    heat.replaceChildren(el('h2', { text: 'Compatibility matrix' }));
    const shown = cases.map((c, i) => [c, i]).filter(([c]) => visible(c));
    const rows = [], cols = [], cells = new Map();
    for (const [c, i] of shown) {
      const r = key(c, state.rows), k = key(c, state.cols);
      if (!rows.includes(r)) rows.push(r);
      if (!cols.includes(k)) cols.push(k);
      const id = r + '\u0000' + k;
      if (!cells.has(id)) cells.set(id, []);
      cells.get(id).push(i);
    }
    const table = el('table', { className: 'heat' });
    // Column heads one axis a line, so that a dozen columns fit beside the details.
    const head = el('tr', {}, [el('th', { className: 'corner', text:
      'rows: ' + (state.rows.join(' · ') || '-') + '\ncolumns: ' + (state.cols.join(' · ') || '-') })]);
    for (const k of cols) head.append(el('th', { className: 'col', text: k.split(' · ').join('\n') }));
    table.append(head);
    for (const r of rows) {
      const tr = el('tr', {}, [el('th', { text: r })]);
      for (const k of cols) {
        const td = el('td');
        for (const i of cells.get(r + '\u0000' + k) || []) {
          const c = cases[i];
          td.append(el('button', {
            className: 'case' + (mispredicted(c) ? ' mispredicted' : '') + (i === state.selected ? ' selected' : ''),
            'data-index': String(i), 'data-outcome': c.outcome, title: c.case + '\n' + c.outcome,
            'aria-label': c.case, style: 'background:' + color(c.outcome),
            text: mispredicted(c) ? '!' : '', onclick: () => select(i)
          }));
        }
        tr.append(td);
      }
      table.append(tr);
    }
    heat.append(el('div', { className: 'scroll' }, [table]));
    const legend = el('div', { className: 'legend' });
    for (const o of Object.keys(COLORS).filter((o) => counts[o])) {
      legend.append(el('span', {}, [el('span', { className: 'swatch', style: 'background:' + color(o) }), o]));
    }
    legend.append(el('span', { text: '! = not what the rules predicted · one square per case; cases differing ' +
                                     'in an axis outside the table share a cell' }));
    heat.append(legend);
    if (!shown.length) heat.append(el('p', { className: 'note', text: 'No case matches the filters.' }));
  }

  function barChart(title, unit, values) {
    const shown = cases.map((c, i) => [c, i]).filter(([c]) => visible(c));
    const max = Math.max(0, ...shown.map(([c]) => (isFinite(values(c)) ? values(c) : 0)));
    const bw = Math.max(3, Math.min(14, Math.floor(900 / Math.max(1, shown.length))));
    const h = 120, left = 56, width = left + shown.length * bw + 10;
    const svg = svgEl('svg', { width: width, height: h + 24, role: 'img', 'aria-label': title });
    svg.append(svgEl('line', { x1: left, x2: width, y1: h + 2, y2: h + 2, stroke: '#c5cad3' }));
    const top = svgEl('text', { x: left - 6, y: 12, 'text-anchor': 'end' });
    top.textContent = max ? fmt(max, max < 10 ? 2 : 0) : '0';
    const zero = svgEl('text', { x: left - 6, y: h + 4, 'text-anchor': 'end' });
    zero.textContent = '0';
    svg.append(top, zero);
    shown.forEach(([c, i], j) => {
      const v = isFinite(values(c)) ? values(c) : 0;
      const bh = max ? Math.max(v > 0 ? 1 : 0, (v / max) * (h - 8)) : 0;
      const bar = svgEl('rect', { x: left + j * bw, y: h + 2 - bh, width: Math.max(1, bw - 1),
                                  height: bh, fill: color(c.outcome), 'data-index': String(i),
                                  class: 'bar' + (i === state.selected ? ' selected' : '') });
      const tip = svgEl('title', {});
      tip.textContent = c.case + ': ' + (v ? fmt(v, 2) + ' ' + unit : 'no figure (' + c.outcome + ')');
      bar.append(tip);
      bar.addEventListener('click', () => select(i));
      svg.append(bar);
    });
    return el('div', { className: 'chart' }, [el('div', { className: 'title', text: title }),
                                             el('div', { className: 'scroll' }, [svg])]);
  }

  function renderCharts() {
    charts.replaceChildren(el('h2', { text: 'Step time and peak memory per case' }),
      el('p', { className: 'note', text: 'One bar per case shown, in matrix order, coloured by outcome; ' +
        'cases that did not train have no step time. Hover for the case, click for its details.' }),
      barChart('median step time (ms)', 'ms', (c) => num(((c.timings || {}).step || {}).median_ms)),
      barChart('peak memory (MiB)', 'MiB', (c) => num((c.memory || {}).peak_bytes) / 1048576));
  }

  function select(i) {
    state.selected = i;
    for (const e of document.querySelectorAll('.selected')) e.classList.remove('selected');
    for (const e of document.querySelectorAll('[data-index="' + i + '"]')) e.classList.add('selected');
    showDetails(cases[i]);
  }

  function showDetails(c) {
    const dl = (pairs) => {
      const d = el('dl');
      for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== '') {
        d.append(el('dt', { text: k }), el('dd', { text: String(v) }));
      }
      return d;
    };
    const t = c.timings || {}, m = c.memory || {}, w = c.worker || {}, p = c.prediction, f = c.fix_check;
    const parts = [el('h3', { text: c.case }),
      el('p', {}, [el('span', { className: 'pill', style: 'background:' + color(c.outcome), text: c.outcome }),
                   c.prediction ? (c.as_predicted ? '  as predicted' : '  NOT as predicted') : '  (no prediction)'])];
    parts.push(dl([['phase', c.phase], ['step', c.step >= 0 ? c.step : undefined],
                   ['skip reason', c.skip_reason]]));
    if (c.message) parts.push(el('h4', { text: 'Message' }), el('pre', { className: 'message', text: c.message }));
    parts.push(el('h4', { text: 'Prediction' }), p ? dl([['predicted', p.outcome], ['rule', p.rule],
               ['why', p.why], ['fix', p.fix]]) : el('p', { className: 'note', text: 'none: the run had no rules' }));
    if (f) {
      parts.push(el('h4', { text: 'Fix check' }), dl([['verified', f.verified ? 'yes' : 'no'],
                 ['outcome', f.outcome], ['case', f.case], ['message', f.message]]));
    }
    const losses = (c.losses || []).map((l) => fmt(l, 4));
    parts.push(el('h4', { text: 'Losses' }),
               el('p', { className: 'losses', text: losses.length ? losses.join(', ') : 'none (no step ran)' }));
    const pct = (x) => (x ? fmt(x.median_ms, 2) + ' / ' + fmt(x.p90_ms, 2) : undefined);
    parts.push(el('h4', { text: 'Timings (median / p90 ms) and memory' }), dl([
      ['step', pct(t.step)], ['forward', pct(t.forward)], ['backward', pct(t.backward)],
      ['optimizer', pct(t.optimizer)], ['load', t.load_ms !== undefined ? fmt(t.load_ms, 1) + ' ms' : undefined],
      ['tokens/s', t.tokens_per_s !== undefined ? fmt(t.tokens_per_s, 0) : undefined],
      ['wall', t.wall_ms !== undefined ? fmt(t.wall_ms, 0) + ' ms' : undefined],
      ['peak memory', m.peak_bytes !== undefined ? fmt(num(m.peak_bytes) / 1048576, 1) + ' MiB' : undefined],
      ['bits/param', m.base_weight_bits_per_param !== undefined ? fmt(m.base_weight_bits_per_param, 3) +
        ' (theory ' + fmt(m.theory_bits_per_param, 3) + ')' : undefined]]));
    parts.push(el('h4', { text: 'Axes' }), dl(axisNames.map((n) => [n, (c.axes || {})[n]])));
    if (w.exit_code || w.signal || w.output) {
      parts.push(el('h4', { text: 'Worker' }), dl([['exit code', w.exit_code], ['signal', w.signal]]));
      if (w.output) parts.push(el('pre', { text: w.output }));
    }
    details.replaceChildren(...parts);
  }

  function render() { renderHeat(); renderCharts(); }
  render();
})();
)JS";

}  // namespace qlc::reports
