// herald dashboard: the attempt timeline, drawn as inline SVG: one lane per
// destination, a mark per attempt coloured by outcome, throttle pauses and open
// circuits shaded, the next planned attempt as a hollow ring.

const NS = 'http://www.w3.org/2000/svg';

/** Outcome → colour and words, shared with the legend. */
export const OUTCOMES = {
  delivered: ['#1a7f37', 'delivered'],
  retry: ['#bf8700', 'retry'],
  throttled: ['#0969da', 'throttled'],
  permanent: ['#cf222e', 'permanent failure'],
  unknown: ['#8250df', 'unknown (ambiguous)'],
  reconciling: ['#57606a', 'looking up'],
};

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const ms = (iso) => (iso ? Date.parse(iso) : NaN);

/**
 * The timeline of `broadcast` with its `attempts` (GET …/attempts) and the
 * destinations' health (GET /v1/destinations, for open circuits), `width` px wide.
 */
export function timeline(broadcast, attempts, health, width) {
  const lanes = [...new Set(broadcast.deliveries.map((d) => d.destination))];
  const start = ms(broadcast.created_at);
  let end = Date.now();
  for (const a of attempts) end = Math.max(end, ms(a.started_at) + a.duration_ms);
  for (const d of broadcast.deliveries) if (d.next_attempt_at) end = Math.max(end, ms(d.next_attempt_at));
  const span = Math.max(end - start, 1000);
  const label = Math.min(140, Math.max(90, width * 0.22));
  const laneHeight = 28;
  const top = 8;
  const height = top + lanes.length * laneHeight + 26;
  const plot = Math.max(width - label - 16, 60);
  const x = (t) => label + ((t - start) / span) * plot;

  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'timeline',
    'aria-label': `Attempt timeline: ${attempts.length} attempts over ${lanes.length} destinations`,
  });
  svg.append(el('title', {}, 'Attempts per destination over time'));
  lanes.forEach((lane, i) => {
    const y = top + i * laneHeight;
    const mid = y + laneHeight / 2;
    svg.append(el('rect', { x: label, y: y + 2, width: plot, height: laneHeight - 4, class: 'lane' }));
    svg.append(el('text', { x: label - 8, y: mid + 4, 'text-anchor': 'end', class: 'lane-label' }, lane));
    const mine = attempts.filter((a) => a.destination === lane).sort((a, b) => ms(a.started_at) - ms(b.started_at));
    // A throttle pause lasts from the throttled answer to the next attempt (or now).
    mine.forEach((a, k) => {
      if (a.outcome !== 'throttled') return;
      const from = ms(a.started_at) + a.duration_ms;
      const next = mine[k + 1] ? ms(mine[k + 1].started_at) : end;
      const pause = el('rect', { x: x(from), y: y + 4, width: Math.max(x(next) - x(from), 2), height: laneHeight - 8, class: 'shade-throttle' });
      pause.append(el('title', {}, `${lane}: throttled, paused until the next attempt`));
      svg.append(pause);
    });
    const dest = health.find((h) => h.name === lane);
    if (dest && dest.circuit === 'open') {
      const until = dest.circuit_open_until ? ms(dest.circuit_open_until) : end;
      const last = mine.length ? ms(mine[mine.length - 1].started_at) : start;
      const open = el('rect', { x: x(last), y: y + 4, width: Math.max(x(Math.min(until, end)) - x(last), 2), height: laneHeight - 8, class: 'shade-circuit' });
      open.append(el('title', {}, `${lane}: circuit open${dest.circuit_reason ? `: ${dest.circuit_reason}` : ''}`));
      svg.append(open);
    }
    for (const a of mine) {
      const [colour, words] = OUTCOMES[a.outcome] || ['#57606a', a.outcome];
      const cx = x(ms(a.started_at));
      const w = Math.max(x(ms(a.started_at) + a.duration_ms) - cx, 0);
      if (w > 3) svg.append(el('rect', { x: cx, y: mid - 2, width: w, height: 4, fill: colour, opacity: 0.5 }));
      const mark = el('circle', { cx, cy: mid, r: 6, fill: colour, class: `mark outcome-${a.outcome}` });
      mark.append(el('title', {}, `${lane} attempt ${a.number}: ${words}${a.status ? ` (HTTP ${a.status})` : ''}, ${a.duration_ms} ms${a.detail ? ` — ${a.detail}` : ''}`));
      svg.append(mark);
    }
    for (const d of broadcast.deliveries.filter((d) => d.destination === lane && d.next_attempt_at)) {
      const ring = el('circle', { cx: x(ms(d.next_attempt_at)), cy: mid, r: 6, class: 'next' });
      ring.append(el('title', {}, `${lane}: next attempt at ${new Date(d.next_attempt_at).toLocaleTimeString()}`));
      svg.append(ring);
    }
  });
  const axis = top + lanes.length * laneHeight + 16;
  svg.append(el('text', { x: label, y: axis, class: 'axis' }, new Date(start).toLocaleTimeString()));
  svg.append(el('text', { x: label + plot, y: axis, 'text-anchor': 'end', class: 'axis' }, `+${formatSpan(span)}`));
  return svg;
}

/** A small bar chart of the last outcomes (`'delivered' | 'failed' | …`), oldest first. */
export function sparkline(states, label) {
  const width = 120;
  const height = 22;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'spark', 'aria-label': label });
  svg.append(el('title', {}, label));
  const n = Math.max(states.length, 1);
  const step = width / Math.max(n, 12);
  states.forEach((state, i) => {
    const tall = state === 'delivered' ? height : state === 'failed' ? height : height * 0.55;
    svg.append(el('rect', { x: i * step + 1, y: height - tall, width: Math.max(step - 2, 1), height: tall, class: `spark-${state}` }));
  });
  return svg;
}

function formatSpan(msSpan) {
  const s = msSpan / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
