// The settings panel's values as the engine takes them: checked ranges, defaults for empty fields.

import { state, reportError } from './state.js';

/** The settings the panel keeps (also their keys in localStorage). */
export const SETTING_NAMES = ['system', 'temperature', 'topP', 'topK', 'maxTokens', 'seed', 'contextSize', 'markdown', 'useCache', 'useSubgroups'];

/** The context the user asked for, in tokens. */
export function wantedContext(raw = state.settings) {
  return Number(raw.contextSize) || 4096;
}

function numberSetting(name, value, { min, max, integer = false, fallback }) {
  const raw = String(value ?? '').trim();
  if (raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw Object.assign(new Error(`${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${raw}`), { code: 'INVALID_SAMPLING_PARAMS' });
  }
  return v;
}

/**
 * The panel's raw values turned into sampling and load options.
 * @throws {Error} INVALID_SAMPLING_PARAMS for a number out of range
 */
export function parseSettings(raw) {
  return {
    system: String(raw.system ?? '').trim(),
    temperature: numberSetting('temperature', raw.temperature, { min: 0, max: 2, fallback: 0.7 }),
    topP: numberSetting('top-p', raw.topP, { min: 0.01, max: 1, fallback: 1 }),
    topK: numberSetting('top-k', raw.topK, { min: 0, max: 1e6, integer: true, fallback: 0 }),
    maxTokens: numberSetting('max tokens', raw.maxTokens, { min: 1, max: 1e6, integer: true, fallback: 512 }),
    seed: numberSetting('seed', raw.seed, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true, fallback: null }),
    cache: !!raw.useCache,
    // Off runs the kernels adapters without subgroups get: slower, for comparing the two paths.
    subgroups: raw.useSubgroups !== false,
  };
}

/** The current settings, or null after showing why they are invalid. */
export function currentSettings() {
  try {
    return parseSettings(state.settings);
  } catch (e) {
    reportError(e);
    return null;
  }
}
