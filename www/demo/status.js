// Section: what the page tells the user about itself. `body[data-state]`, the status line above
// the chat, the error box and the notice under the model picker.

import { $ } from './dom.js';
import { state, subscribe, clearError } from './state.js';

const ui = {
  statusDot: $('status-dot'),
  statusText: $('status-text'),
  errorBox: $('error-box'),
  error: $('error'),
  errorClose: $('error-close'),
  notice: $('notice'),
};

function renderPhase() {
  const phase = state.phase;
  document.body.dataset.state = phase;
  ui.statusDot.dataset.phase = phase;
  const name = state.loaded?.name ?? '';
  ui.statusText.textContent = {
    starting: 'Starting…',
    unsupported: 'WebGPU is not available',
    idle: 'No model loaded',
    loading: `Loading ${state.loadingName ?? 'model'}…`,
    ready: `${name} · ready`,
    generating: `${name} · generating…`,
    benchmarking: `${name} · benchmarking…`,
  }[phase];
}

function renderError() {
  const e = state.error;
  ui.error.textContent = e ? `${e.code}: ${e.message}` : '';
  ui.errorBox.hidden = !e;
}

function renderNotice() {
  ui.notice.textContent = state.notice;
  ui.notice.hidden = !state.notice;
}

/** Renders the phase, errors and notices as they change; the error box can be dismissed. */
export function initStatus() {
  subscribe('phase', renderPhase);
  subscribe('error', renderError);
  subscribe('notice', renderNotice);
  ui.errorClose.addEventListener('click', clearError);
}
