// herald dashboard: the three pages (broadcast list, one broadcast, destinations) and
// the actions on them. Pages render from API answers only; the broadcast page keeps
// itself current from the SSE stream (no polling).

import { api, follow } from './api.js';
import { OUTCOMES, sparkline, timeline } from './timeline.js';

/** Where the runbook's sections live; each failure reason has an anchor there. */
const RUNBOOK = 'runbook';

/** Builds an element: `h('a', {href}, 'text', child…)`; `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const STATES = ['in_progress', 'delivered', 'partially_failed', 'failed', 'cancelled', 'held'];

/** Plain words for what a delivery failure reason means. */
const REASONS = {
  permanent: 'The destination refused the message for good (a 4xx that retrying cannot fix).',
  attempts_exhausted: 'Every allowed attempt failed.',
  expired: 'The message expired before it could be delivered.',
  predecessor_failed: 'An earlier message of this thread failed, so this update could not follow it.',
  ambiguous: 'The last attempt may or may not have arrived, and the destination cannot tell.',
};

/** The runbook anchor of a reason (`attempts_exhausted` → `#attempts-exhausted`). */
const anchor = (reason) => `${RUNBOOK}#${reason.replaceAll('_', '-')}`;

function time(iso) {
  if (!iso) return '';
  const at = new Date(iso);
  return h('time', { datetime: iso, title: at.toISOString() }, at.toLocaleString());
}

/** What a delivery is doing, in the words the dashboard uses. */
export function phase(d) {
  if ((d.state === 'pending' || d.state === 'in_flight') && d.attempts > 0) return 'retrying';
  return d.state;
}

/** "3 of 5 delivered, 1 retrying, 1 failed". */
export function summary(deliveries) {
  const counts = {};
  for (const d of deliveries) counts[phase(d)] = (counts[phase(d)] || 0) + 1;
  const parts = [`${counts.delivered || 0} of ${deliveries.length} delivered`];
  for (const state of ['retrying', 'in_flight', 'pending', 'waiting', 'held', 'failed', 'cancelled']) {
    if (counts[state]) parts.push(`${counts[state]} ${state.replace('_', ' ')}`);
  }
  return parts.join(', ');
}

function badge(state) {
  return h('span', { class: `badge state-${state}` }, state.replace('_', ' '));
}

function problem(main, error) {
  main.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
}

// ---- broadcast list ----

/** `#/?state=&destination=&cursor=`: newest first, filters, pages through the cursor. */
export async function listPage(main, params, { current }) {
  const query = new URLSearchParams();
  for (const key of ['state', 'destination', 'cursor']) if (params.get(key)) query.set(key, params.get(key));
  query.set('limit', '25');
  const [page, dests] = await Promise.all([api(`/v1/broadcasts?${query}`), api('/v1/destinations')]);
  const filter = (key, values, all) => h('label', {}, `${key[0].toUpperCase()}${key.slice(1)} `,
    h('select', { name: key, id: `filter-${key}` },
      h('option', { value: '' }, all),
      values.map((v) => h('option', { value: v, selected: params.get(key) === v }, v.replace('_', ' ')))));
  const form = h('form', { class: 'filters', onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) next.set(key, value);
    location.hash = `#/?${next}`;
  } }, filter('state', STATES, 'any state'), filter('destination', dests.destinations.map((d) => d.name), 'any destination'),
  h('button', { type: 'submit' }, 'Filter'));
  const rows = page.items.map((b) => h('tr', { 'data-id': b.id },
    h('td', {}, h('a', { href: `#/broadcasts/${encodeURIComponent(b.id)}` }, b.message.title || b.id)),
    h('td', { 'data-label': 'State' }, badge(b.state)),
    h('td', { class: 'summary', 'data-label': 'Deliveries' }, summary(b.deliveries)),
    h('td', { 'data-label': 'Created' }, time(b.created_at))));
  const paging = h('nav', { class: 'paging', 'aria-label': 'Pages' },
    params.get('cursor') ? h('a', { href: `#/?${withCursor(params, '')}` }, '← Newest') : null,
    page.next_cursor ? h('a', { href: `#/?${withCursor(params, page.next_cursor)}`, rel: 'next' }, 'Older →') : null);
  if (!current()) return;
  main.replaceChildren(h('h1', {}, 'Broadcasts'), form,
    rows.length
      ? h('div', { class: 'scroll' }, h('table', { id: 'broadcasts' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Message'), h('th', {}, 'State'), h('th', {}, 'Deliveries'), h('th', {}, 'Created'))),
        h('tbody', {}, rows)))
      : h('p', { class: 'muted' }, 'No broadcast matches.'),
    paging);
}

function withCursor(params, cursor) {
  const next = new URLSearchParams(params);
  if (cursor) next.set('cursor', cursor);
  else next.delete('cursor');
  return next;
}

// ---- one broadcast ----

/** `#/broadcasts/{id}`: rows, thread and timeline, kept current by the stream. Returns a stop function. */
export async function broadcastPage(main, id, { confirm, toast, live, current }) {
  let broadcast = await api(`/v1/broadcasts/${encodeURIComponent(id)}`);
  let attempts = [];
  let health = [];
  let stop = () => {};
  let refreshing = null;
  let again = false;

  // Each event changes a row at once; the full view (attempts, errors, next times)
  // is read again after it, one read at a time.
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = (async () => {
      do {
        again = false;
        const [b, a, d] = await Promise.all([
          api(`/v1/broadcasts/${encodeURIComponent(id)}`),
          api(`/v1/broadcasts/${encodeURIComponent(id)}/attempts`),
          api('/v1/destinations'),
        ]);
        broadcast = b; attempts = a.attempts; health = d.destinations;
        render();
      } while (again);
    })().catch((error) => toast(error.message, true)).finally(() => { refreshing = null; });
  }

  function act(title, text, path) {
    return async () => {
      if (!(await confirm(title, text))) return;
      try {
        await api(path, { method: 'POST' });
        toast(`${title}: done.`);
        await refresh();
        restart();
      } catch (error) {
        toast(error.message, true);
      }
    };
  }

  function actions(d) {
    const path = (what) => `/v1/deliveries/${encodeURIComponent(d.id)}/${what}`;
    const buttons = [];
    if (d.state === 'held') {
      buttons.push(h('button', { type: 'button', class: 'primary', 'data-action': 'release', onclick: act('Release held delivery',
        `Send to ${d.destination} again? The last attempt may have arrived already; this destination cannot deduplicate, so it may show twice.`, path('retry')), title: 'Release the held delivery: send it again' }, 'Retry'));
    }
    if (d.state === 'failed' || d.state === 'cancelled') {
      buttons.push(h('button', { type: 'button', 'data-action': 'retry', onclick: act('Retry delivery',
        `Try ${d.destination} again with a fresh attempt budget?`, path('retry')) }, 'Retry'));
    }
    if (['pending', 'waiting', 'held', 'in_flight'].includes(d.state)) {
      buttons.push(h('button', { type: 'button', 'data-action': 'cancel', onclick: act('Cancel delivery',
        `Stop delivering to ${d.destination}? Nothing more will be sent there for this message.`, path('cancel')) }, 'Cancel'));
    }
    return buttons;
  }

  function errorCell(d) {
    const parts = [];
    if (d.failure_reason) {
      parts.push(h('p', {}, REASONS[d.failure_reason] || d.failure_reason, ' ',
        h('a', { href: anchor(d.failure_reason) }, `Runbook: ${d.failure_reason.replaceAll('_', ' ')}`)));
    } else if (d.state === 'held') {
      parts.push(h('p', {}, 'Held: herald cannot tell whether the last attempt arrived. Release it or cancel it. ',
        h('a', { href: anchor('held') }, 'Runbook: held')));
    }
    // A delivered row keeps the error of an earlier attempt: say it is history.
    if (d.last_error) parts.push(h('p', { class: 'detail' }, d.state === 'delivered' ? `Before delivery: ${d.last_error}` : d.last_error));
    return parts.length ? parts : h('span', { class: 'muted' }, '—');
  }

  function remote(d) {
    if (!d.remote_ref) return h('span', { class: 'muted' }, '—');
    if (d.remote_url && /^https?:\/\//.test(d.remote_url)) {
      return h('a', { href: d.remote_url, rel: 'noreferrer', target: '_blank', title: d.remote_ref }, `open ${d.remote_ref}`);
    }
    return h('code', {}, d.remote_ref);
  }

  // A stream event or a read that lands after the operator moved on draws nothing.
  function render() {
    if (!current()) return;
    const rows = broadcast.deliveries
      .slice().sort((a, b) => a.destination.localeCompare(b.destination) || a.seq - b.seq)
      .map((d) => h('tr', { 'data-delivery': d.id, 'data-destination': d.destination, 'data-state': d.state, 'data-seq': d.seq },
        h('th', { scope: 'row' }, d.destination, d.seq ? h('span', { class: 'muted' }, ` update ${d.seq}`) : null),
        h('td', { class: 'state', 'data-label': 'State' }, badge(phase(d)), d.unconfirmed ? h('span', { class: 'muted' }, ' unconfirmed') : null),
        h('td', { 'data-label': 'Attempt' }, `${d.attempts} of ${d.max_attempts}`),
        h('td', { 'data-label': 'Next attempt' }, d.next_attempt_at ? time(d.next_attempt_at) : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'why', 'data-label': 'Last error' }, errorCell(d)),
        h('td', { 'data-label': 'Remote' }, remote(d)),
        h('td', { class: 'actions' }, actions(d))));
    const updates = broadcast.updates.map((u) => h('li', {}, h('strong', {}, `Update ${u.seq}: `), u.message.title, ' ', h('span', { class: 'muted' }, time(u.created_at))));
    const width = Math.min(Math.max((main.clientWidth || 900) - 8, 300), 1200);
    const legend = h('ul', { class: 'legend' }, Object.entries(OUTCOMES).map(([key, [colour, words]]) =>
      h('li', {}, h('span', { class: `swatch outcome-${key}`, 'aria-hidden': 'true' }), words)),
    h('li', {}, h('span', { class: 'swatch shade-throttle', 'aria-hidden': 'true' }), 'throttle pause'),
    h('li', {}, h('span', { class: 'swatch shade-circuit', 'aria-hidden': 'true' }), 'circuit open'),
    h('li', {}, h('span', { class: 'swatch next', 'aria-hidden': 'true' }), 'next attempt'));
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/' }, '← Broadcasts')),
      h('h1', {}, broadcast.message.title || broadcast.id),
      h('p', { class: 'meta' }, badge(broadcast.state), ' ', h('span', { id: 'summary' }, summary(broadcast.deliveries)), ' · ', h('code', {}, broadcast.id), ' · created ', time(broadcast.created_at)),
      broadcast.message.body ? h('p', { class: 'body' }, broadcast.message.body) : null,
      h('div', { class: 'scroll' }, h('table', { id: 'deliveries' },
        h('thead', {}, h('tr', {}, ['Destination', 'State', 'Attempt', 'Next attempt', 'Last error', 'Remote', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))),
      h('h2', {}, 'Attempt timeline'),
      h('figure', { id: 'timeline' }, timeline(broadcast, attempts, health, width), legend),
      h('h2', {}, 'Thread'),
      h('ol', { class: 'thread' }, h('li', {}, h('strong', {}, 'Original: '), broadcast.message.title), updates),
    );
  }

  function onEvent(event) {
    let data = null;
    try { data = JSON.parse(event.data); } catch { return; }
    if (event.event === 'snapshot' || event.event === 'done') {
      broadcast = data;
      render();
    } else if (event.event === 'delivery') {
      const d = broadcast.deliveries.find((x) => x.id === data.delivery_id);
      if (d) {
        d.state = data.state;
        if (data.reason) d.failure_reason = data.reason;
        render();
      }
    }
    refresh();
  }

  function restart() {
    stop();
    if (current()) stop = follow(id, onEvent, live);
  }

  const [a, d] = await Promise.all([api(`/v1/broadcasts/${encodeURIComponent(id)}/attempts`), api('/v1/destinations')]);
  attempts = a.attempts; health = d.destinations;
  render();
  restart();
  return () => stop();
}

// ---- destinations ----

/** `#/destinations`: health, circuit, throttle, counts, recent outcomes; pause and resume. */
export async function destinationsPage(main, ctx) {
  const { confirm, toast, current } = ctx;
  const [dests, recent] = await Promise.all([api('/v1/destinations'), api('/v1/broadcasts?limit=200')]);
  // Recent outcomes per destination, oldest first, from the newest broadcasts' deliveries.
  const outcomes = {};
  for (const b of recent.items.slice().reverse()) {
    for (const d of b.deliveries) (outcomes[d.destination] ||= []).push(phase(d));
  }
  const act = (title, text, path) => async () => {
    if (!(await confirm(title, text))) return;
    try {
      await api(path, { method: 'POST' });
      toast(`${title}: done.`);
      await destinationsPage(main, ctx);
    } catch (error) {
      toast(error.message, true);
    }
  };
  const cards = dests.destinations.map((d) => {
    const health = d.paused ? 'paused' : d.circuit === 'open' ? 'circuit open' : d.throttled ? 'throttled' : d.recent_error_rate > 0.5 ? 'failing' : 'healthy';
    const last = (outcomes[d.name] || []).slice(-24);
    const path = (what) => `/v1/destinations/${encodeURIComponent(d.name)}/${what}`;
    return h('section', { class: 'card', 'data-destination': d.name, 'aria-labelledby': `dest-${d.name}` },
      h('h2', { id: `dest-${d.name}` }, d.name, ' ', h('span', { class: 'muted' }, d.kind)),
      h('p', {}, h('span', { class: `badge health-${health.replace(' ', '-')}` }, health),
        d.paused && d.paused_reason ? h('span', { class: 'muted' }, ` ${d.paused_reason}`) : null),
      h('dl', {},
        h('dt', {}, 'Circuit'), h('dd', {}, d.circuit.replace('_', ' '), d.circuit_reason ? ` — ${d.circuit_reason}` : '', d.circuit_open_until ? [' until ', time(d.circuit_open_until)] : ''),
        h('dt', {}, 'Throttled'), h('dd', {}, d.throttled ? 'yes, pacing after a 429' : 'no'),
        h('dt', {}, 'Error rate'), h('dd', {}, `${Math.round(d.recent_error_rate * 100)} % of recent attempts`),
        h('dt', {}, 'Last success'), h('dd', {}, d.last_success_at ? time(d.last_success_at) : '—'),
        d.last_error ? [h('dt', {}, 'Last error'), h('dd', { class: 'detail' }, d.last_error)] : null),
      h('ul', { class: 'counts' }, ['pending', 'in_flight', 'waiting', 'held', 'delivered', 'failed', 'cancelled'].map((k) =>
        h('li', { 'data-count': k }, h('strong', {}, String(d[k])), ' ', k.replace('_', ' ')))),
      h('div', { class: 'recent' }, h('span', { class: 'muted' }, 'Recent: '),
        sparkline(last, `Recent outcomes of ${d.name}, oldest first: ${last.join(', ') || 'none yet'}`)),
      h('div', { class: 'actions' }, d.paused
        ? h('button', { type: 'button', class: 'primary', 'data-action': 'resume', onclick: act(`Resume ${d.name}`, `Start sending to ${d.name} again? Waiting deliveries go out at once.`, path('resume')) }, 'Resume')
        : h('button', { type: 'button', 'data-action': 'pause', onclick: act(`Pause ${d.name}`, `Stop sending to ${d.name}? New deliveries wait (pending) until you resume; nothing is lost.`, path('pause')) }, 'Pause')));
  });
  if (current()) main.replaceChildren(h('h1', {}, 'Destinations'), h('div', { class: 'cards' }, cards));
}

export { problem };
