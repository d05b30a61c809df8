// herald dashboard: hash routing, the live indicator, the confirmation dialog and
// messages. Each page is a function of views.js that renders into <main>.

import { broadcastPage, destinationsPage, listPage, problem } from './views.js';

const main = document.getElementById('main');
const indicator = document.getElementById('live');
let leave = () => {};
/** Bumped on every navigation: a page whose number is no longer current draws nothing. */
let generation = 0;

/** Shows the stream's state: live, reconnecting, or nothing once the broadcast ended. */
function live(status) {
  indicator.hidden = status === 'off';
  indicator.className = `live ${status}`;
  indicator.dataset.status = status;
  indicator.textContent = { live: 'Live', reconnecting: 'Reconnecting…', ended: 'Final' }[status] || '';
}

/** Asks before acting; resolves true on confirm. The <dialog> keeps focus inside. */
function confirm(title, text) {
  const dialog = document.getElementById('confirm-dialog');
  const form = document.getElementById('confirm-form');
  const no = document.getElementById('confirm-no');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const finish = (answer) => (event) => {
      if (event) event.preventDefault();
      form.removeEventListener('submit', yes);
      no.removeEventListener('click', nope);
      dialog.removeEventListener('cancel', nope);
      dialog.close();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(answer);
    };
    const yes = finish(true);
    const nope = finish(false);
    form.addEventListener('submit', yes);
    no.addEventListener('click', nope);
    dialog.addEventListener('cancel', nope);
    dialog.showModal();
    no.focus();
  });
}

let toastTimer = null;
/** A short message in the corner, announced to screen readers. */
function toast(text, error = false) {
  const box = document.getElementById('toast');
  box.textContent = text;
  box.className = error ? 'show error' : 'show';
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = ''; }, error ? 10000 : 4000);
}

async function route() {
  leave();
  leave = () => {};
  generation += 1;
  const mine = generation;
  const current = () => mine === generation;
  live('off');
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const page = path.startsWith('/destinations') ? 'destinations' : path.startsWith('/broadcasts/') ? 'broadcast' : 'list';
  for (const link of document.querySelectorAll('nav a[data-page]')) {
    if (link.dataset.page === page || (page === 'broadcast' && link.dataset.page === 'list')) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    if (page === 'destinations') {
      document.title = 'Destinations · herald';
      await destinationsPage(main, { confirm, toast, current });
    } else if (page === 'broadcast') {
      const id = decodeURIComponent(path.slice('/broadcasts/'.length));
      document.title = `${id} · herald`;
      const stop = await broadcastPage(main, id, { confirm, toast, live: (status) => current() && live(status), current });
      if (current()) leave = stop;
      else stop();
    } else {
      document.title = 'Broadcasts · herald';
      await listPage(main, params, { current });
    }
  } catch (error) {
    if (current()) problem(main, error);
  }
}

window.addEventListener('hashchange', route);
// A link to the page already shown changes no hash: read the page again instead.
document.addEventListener('click', (event) => {
  const link = event.target instanceof Element ? event.target.closest('a[href^="#"]') : null;
  if (link && link.getAttribute('href') === (location.hash || '#/')) route();
});
route();
