// herald dashboard: the /v1 API client. The token lives in sessionStorage (this tab
// only, never in a URL) and goes out as `Authorization: Bearer`; a 401 asks again.
// The SSE stream is read with fetch + a stream parser, since EventSource cannot send
// the header.

const KEY = 'herald.token';

/** An API answer that was not 2xx, with its problem document when there is one. */
export class ApiError extends Error {
  constructor(status, problem, text, scope) {
    super(describe(status, problem, text, scope));
    this.status = status;
    this.problem = problem;
  }
}

function describe(status, problem, text, scope) {
  const detail = (problem && (problem.detail || problem.title)) || text || `HTTP ${status}`;
  if (status === 403) {
    return `Not allowed: this needs a token with the \`${scope || 'another'}\` scope (or \`admin\`). ${detail}`;
  }
  return detail;
}

function headers(extra) {
  const h = { ...extra };
  const token = sessionStorage.getItem(KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

let asking = null;

/** Shows the token dialog once (concurrent callers share it); resolves when a token is entered. */
export function askToken(why) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-why').textContent = why;
  input.value = '';
  asking = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(KEY, token);
      form.removeEventListener('submit', done);
      dialog.removeEventListener('cancel', keep);
      dialog.close();
      asking = null;
      resolve();
    };
    // Escape would leave the page without data: keep the dialog open.
    const keep = (event) => event.preventDefault();
    form.addEventListener('submit', done);
    dialog.addEventListener('cancel', keep);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/**
 * A 401 for a request sent with token `sent` (or none). When another token was entered
 * while it was in flight (several requests answer 401 to one bad token, one after the
 * other), that newer token is tried rather than forgotten.
 */
function refused(sent) {
  const current = sessionStorage.getItem(KEY);
  if (current && current !== sent) return Promise.resolve();
  sessionStorage.removeItem(KEY);
  return askToken(sent
    ? 'That token was refused (unknown or revoked). Enter another one.'
    : 'This herald needs an API token (`herald token create`). Enter one with the `read` scope, or `operate` to act.');
}

function scopeOf(res) {
  const challenge = res.headers.get('WWW-Authenticate') || '';
  const match = /scope="([^"]+)"/.exec(challenge);
  return match ? match[1] : null;
}

/** `method path` with an optional JSON body; the JSON answer, or throws ApiError. */
export async function api(path, { method = 'GET', body } = {}) {
  for (;;) {
    const sent = sessionStorage.getItem(KEY);
    const init = { method, headers: headers({ Accept: 'application/json' }), cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      await refused(sent);
      continue;
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (!res.ok) throw new ApiError(res.status, json, text, scopeOf(res));
    return json;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows `/v1/broadcasts/{id}/events`: `onEvent({event, data})` for each event,
 * `onStatus('live' | 'reconnecting' | 'ended')`. Reconnects with backoff until the
 * stream sends `done` or the returned function is called.
 */
export function follow(id, onEvent, onStatus) {
  let stopped = false;
  let controller = null;
  (async () => {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      let ended = false;
      try {
        const sent = sessionStorage.getItem(KEY);
        const res = await fetch(`/v1/broadcasts/${encodeURIComponent(id)}/events`, {
          headers: headers({ Accept: 'text/event-stream' }),
          signal: controller.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          await refused(sent);
          continue;
        }
        if (!res.ok || !res.body) throw new ApiError(res.status, null, await res.text(), scopeOf(res));
        onStatus('live');
        delay = 500;
        for await (const event of events(res.body)) {
          if (stopped) return;
          onEvent(event);
          if (event.event === 'done') ended = true;
        }
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status === 403) {
          onStatus('ended');
          return;
        }
      }
      if (ended) {
        onStatus('ended');
        return;
      }
      if (stopped) return;
      onStatus('reconnecting');
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

/** The events of a text/event-stream body (WHATWG HTML's parsing rules, minus `retry`). */
export async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let name = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (data.length) yield { event: name || 'message', data: data.join('\n') };
        name = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'event') name = val;
      else if (field === 'data') data.push(val);
    }
  }
}
