// Section: the stats line under the composer, the timings of the last reply.

import { $ } from './dom.js';
import { formatStats } from './format.js';
import { subscribe } from './state.js';

const stats = $('stats');

function show(text, finish) {
  stats.textContent = text;
  stats.dataset.finish = finish;
}

/** Clears the line when a reply starts or the conversation is cleared; fills it when a reply ends. */
export function initStats() {
  subscribe('conversation', () => show('', ''));
  subscribe('reply', ({ stage, usage, finish }) => {
    if (stage === 'start') show('', '');
    else if (usage) show(`Last reply: ${formatStats(usage, finish)}`, finish ?? '');
  });
}
