// Section: the settings panel (system prompt, sampling, context, Markdown, cache, subgroups). Its inputs are
// mirrored into state.settings as they change, and kept in localStorage between visits.

import { $ } from './dom.js';
import { setSettings } from './state.js';
import { SETTING_NAMES } from './settings.js';

const STORAGE_KEY = 'llama-webgpu-demo/settings';

const inputs = {
  system: $('system-prompt'),
  temperature: $('temperature'),
  topP: $('top-p'),
  topK: $('top-k'),
  maxTokens: $('max-tokens'),
  seed: $('seed'),
  contextSize: $('context-size'),
  markdown: $('markdown'),
  useCache: $('use-cache'),
  useSubgroups: $('use-subgroups'),
};

function values() {
  const out = {};
  for (const k of SETTING_NAMES) out[k] = inputs[k].type === 'checkbox' ? inputs[k].checked : inputs[k].value;
  return out;
}

function restore() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null');
  } catch {
    saved = null;
  }
  if (!saved) return;
  for (const k of SETTING_NAMES) {
    if (!(k in saved)) continue;
    const input = inputs[k];
    if (input.type === 'checkbox') input.checked = !!saved[k];
    else input.value = saved[k];
  }
}

function save() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(values()));
  } catch {
    // storage may be unavailable; settings then last for this visit
  }
}

/** Restores the saved settings and keeps state.settings equal to the inputs from now on. */
export function initSettingsPanel() {
  restore();
  setSettings(values());
  for (const input of Object.values(inputs)) {
    input.addEventListener('input', () => setSettings(values()));
    input.addEventListener('change', () => {
      setSettings(values());
      save();
    });
  }
}
