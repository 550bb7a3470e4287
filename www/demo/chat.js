// Section: the chat. Messages (assistant replies streamed and rendered as Markdown or text), the
// composer with Send and Stop, and New chat. The system prompt and sampling come from the settings.

import { $, el } from './dom.js';
import { formatStats } from './format.js';
import { renderMarkdown } from './markdown.js';
import { currentSettings } from './settings.js';
import {
  state, subscribe, setPhase, reportError, clearError, clearConversation, addTurn, dropLastTurn,
  beginReply, endReply, interruptReply,
} from './state.js';

const ui = {
  messages: $('messages'),
  empty: $('empty'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  newChat: $('new-chat'),
};

/**
 * Adds a message to the list. An assistant message re-renders (throttled to frames) as its text
 * streams in, through the escape-first Markdown renderer when the settings ask for Markdown.
 * @returns {{root: HTMLElement, readonly text: string, update: (text: string, now?: boolean) => void,
 *   finish: (reason: string, usage: object|null) => void}}
 */
export function addMessage(role, text) {
  ui.empty.hidden = true;
  const root = el('article', `msg msg-${role}`);
  root.setAttribute('data-testid', `message-${role}`);
  const who = el('div', 'msg-role', role === 'user' ? 'You' : role === 'assistant' ? (state.loaded?.name ?? 'Assistant') : role);
  const body = el('div', 'msg-body');
  const foot = el('div', 'msg-stats');
  root.append(who, body, foot);
  ui.messages.append(root);
  let current = text;
  let scheduled = false;
  const markdown = role === 'assistant' && !!state.settings.markdown;
  const paint = () => {
    if (!scheduled) return;
    scheduled = false;
    const stick = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
    if (markdown) body.innerHTML = renderMarkdown(current); // escape-first: no markup from the model survives
    else body.textContent = current;
    body.classList.toggle('is-empty', current === '');
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  const view = {
    root,
    get text() {
      return current;
    },
    update(t, now = false) {
      current = t;
      if (!scheduled) {
        scheduled = true;
        if (!now) {
          requestAnimationFrame(paint);
          setTimeout(paint, 100); // frames may be throttled (background tab); text still arrives
        }
      }
      if (now) paint();
    },
    finish(reason, usage) {
      root.dataset.finish = reason;
      root.dataset.done = 'true';
      if (usage) foot.textContent = formatStats(usage, reason);
      else if (reason === 'error') foot.textContent = 'failed';
    },
  };
  view.update(text, true);
  return view;
}

function removeMessages() {
  for (const m of Array.from(ui.messages.querySelectorAll('.msg'))) m.remove();
  ui.empty.hidden = false;
}

function autosize() {
  ui.prompt.style.height = 'auto';
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 200)}px`;
}

function chatRequest(settings) {
  const req = {
    messages: [...(settings.system ? [{ role: 'system', content: settings.system }] : []), ...state.messages],
    stream: true,
    stream_options: { include_usage: true },
    temperature: settings.temperature,
    top_p: settings.topP,
    top_k: settings.topK,
    max_tokens: settings.maxTokens,
  };
  if (settings.seed !== null) req.seed = settings.seed;
  return req;
}

async function send() {
  if (state.phase !== 'ready' || !state.engine) return;
  const text = ui.prompt.value.trim();
  if (!text) return;
  const settings = currentSettings();
  if (!settings) return;
  clearError();
  ui.prompt.value = '';
  autosize();
  addTurn('user', text);
  addMessage('user', text);
  const view = addMessage('assistant', '');
  view.root.dataset.done = 'false';
  beginReply();
  setPhase('generating');
  const req = chatRequest(settings);
  const engine = state.engine;
  let content = '';
  let usage = null;
  let finish = null;
  let failure = null;
  try {
    const stream = await engine.chat.completions.create(req);
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      const piece = choice.delta?.content;
      if (piece) {
        content += piece;
        view.update(content);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    failure = e;
  }
  view.update(content, true);
  if (failure) {
    reportError(failure);
    if (content) addTurn('assistant', content);
    else dropLastTurn(); // the turn failed: leave the user's message out of the context
    finish = 'error';
  } else {
    // Kept even when stopped early: the next turn extends this prefix, so the KV cache is reused.
    addTurn('assistant', content);
  }
  view.finish(finish ?? 'stop', usage);
  endReply(usage, finish);
  if (state.engine === engine) setPhase('ready');
}

async function newChat() {
  await interruptReply();
  clearConversation();
  clearError();
  if (state.engine) {
    try {
      await state.engine.resetChat();
    } catch (e) {
      reportError(e);
    }
  }
  ui.prompt.focus();
}

/** Wires the composer and New chat, and follows the phase and the conversation. */
export function initChat() {
  ui.send.addEventListener('click', send);
  ui.stop.addEventListener('click', () => interruptReply());
  ui.newChat.addEventListener('click', newChat);
  ui.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  ui.prompt.addEventListener('input', autosize);
  subscribe('conversation', removeMessages);
  subscribe('phase', ({ from, to }) => {
    ui.send.disabled = to !== 'ready';
    ui.stop.disabled = to !== 'generating';
    ui.newChat.disabled = !state.engine || to === 'loading';
    if (from === 'loading' && to === 'ready') ui.prompt.focus();
  });
}
