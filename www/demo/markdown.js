// A small, escape-first Markdown renderer for model output.
//
// Safety comes from the order of work: the whole input is HTML-escaped before any Markdown is
// recognised, so no `<`, `>`, `"`, `'` or `&` from the model survives as markup. The renderer then
// only ever inserts its own fixed tags (p, br, h1–h6, ul/ol/li, pre/code, blockquote, hr, strong,
// em, del, a). The one attribute that carries model text is a link's href, and only for http(s)
// URLs, which the escaping has already made safe inside a double-quoted attribute.
//
// Supported: fenced code blocks (``` or ~~~, also unterminated while streaming), inline code,
// headings, bullet and numbered lists (nested by indentation), block quotes, rules, **bold**,
// *italic*, ~~strike~~, [text](https://…) links and bare https:// URLs.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes the five HTML-significant characters. */
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Placeholders for finished HTML fragments: U+E000 (private use) + index + U+E001. Input
// characters in that range are replaced first, so model text can never forge one.
const PH_OPEN = '\uE000';
const PH_CLOSE = '\uE001';
const PH_RE = /\uE000(\d+)\uE001/g;

/** Renders Markdown `src` to an HTML string that contains no markup from `src` itself. */
export function renderMarkdown(src) {
  const store = [];
  const hold = (html) => `${PH_OPEN}${store.push(html) - 1}${PH_CLOSE}`;
  const text = escapeHtml(String(src).replace(/\r\n?/g, '\n').replace(/[\uE000\uE001]/g, '\uFFFD'));
  let html = renderBlocks(text.split('\n'), hold);
  // Restore fragments; a fragment may hold placeholders of its own, so repeat until none are left.
  for (let i = 0; i < 8 && PH_RE.test(html); i++) {
    PH_RE.lastIndex = 0;
    html = html.replace(PH_RE, (_, n) => store[Number(n)] ?? '');
  }
  return html;
}

const FENCE_RE = /^( {0,3})(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$/;
const HEADING_RE = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
const RULE_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE_RE = /^ {0,3}&gt; ?(.*)$/;
const ITEM_RE = /^( *)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;

function indentOf(line) {
  return /^ */.exec(line)[0].length;
}

function isBlockStart(line) {
  return FENCE_RE.test(line) || HEADING_RE.test(line) || RULE_RE.test(line) || QUOTE_RE.test(line) || ITEM_RE.test(line);
}

/** Block-level pass over escaped lines. */
function renderBlocks(lines, hold) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^\s*$/.test(line)) {
      i++;
      continue;
    }
    let m;
    if ((m = FENCE_RE.exec(line))) {
      const fence = m[2];
      const lang = m[3];
      const body = [];
      i++;
      const closing = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
      while (i < lines.length && !closing.test(lines[i])) {
        body.push(lines[i]);
        i++;
      }
      i++; // the closing fence (or past the end while it is still streaming)
      const cls = lang ? ` class="language-${lang}"` : '';
      out.push(hold(`<pre><code${cls}>${body.join('\n')}</code></pre>`));
      continue;
    }
    if ((m = HEADING_RE.exec(line))) {
      const n = m[1].length;
      out.push(`<h${n}>${renderInline(m[2], hold)}</h${n}>`);
      i++;
      continue;
    }
    if (RULE_RE.test(line)) {
      out.push('<hr>');
      i++;
      continue;
    }
    if (QUOTE_RE.test(line)) {
      const inner = [];
      while (i < lines.length && (m = QUOTE_RE.exec(lines[i]))) {
        inner.push(m[1]);
        i++;
      }
      out.push(`<blockquote>${renderBlocks(inner, hold)}</blockquote>`);
      continue;
    }
    if ((m = ITEM_RE.exec(line))) {
      const [html, next] = renderList(lines, i, hold);
      out.push(html);
      i = next;
      continue;
    }
    // Paragraph: up to a blank line or the start of another block.
    const para = [line];
    i++;
    while (i < lines.length && !/^\s*$/.test(lines[i]) && !isBlockStart(lines[i])) {
      para.push(lines[i]);
      i++;
    }
    out.push(`<p>${para.map((l) => renderInline(l.trim(), hold)).join('<br>')}</p>`);
  }
  return out.join('');
}

/** A list starting at line `start`; items deeper than the first item's indent nest inside it. */
function renderList(lines, start, hold) {
  const first = ITEM_RE.exec(lines[start]);
  const base = first[1].length;
  const ordered = /\d/.test(first[2]);
  const tag = ordered ? 'ol' : 'ul';
  const startAttr = ordered && parseInt(first[2], 10) !== 1 ? ` start="${parseInt(first[2], 10)}"` : '';
  const items = [];
  let i = start;
  while (i < lines.length) {
    const m = ITEM_RE.exec(lines[i]);
    if (!m || m[1].length !== base || /\d/.test(m[2]) !== ordered) break;
    const body = [m[3]];
    const contentIndent = base + m[2].length + 1;
    i++;
    // Continuation: indented lines (nested lists, wrapped text) or a lazy paragraph line.
    while (i < lines.length) {
      const l = lines[i];
      if (/^\s*$/.test(l)) {
        // A blank line continues the item only if indented content follows.
        if (i + 1 < lines.length && indentOf(lines[i + 1]) > base && !/^\s*$/.test(lines[i + 1])) {
          body.push('');
          i++;
          continue;
        }
        break;
      }
      const ind = indentOf(l);
      if (ind > base) {
        body.push(l.slice(Math.min(ind, contentIndent)));
        i++;
        continue;
      }
      if (!isBlockStart(l)) {
        body.push(l.trim());
        i++;
        continue;
      }
      break;
    }
    let inner = renderBlocks(body, hold);
    // A tight item (no blank lines) renders its leading paragraph without the <p>.
    if (!body.includes('') && inner.startsWith('<p>')) {
      const end = inner.indexOf('</p>');
      inner = inner.slice(3, end) + inner.slice(end + 4);
    }
    items.push(`<li>${inner}</li>`);
    // Skip blank lines between items of the same list.
    let j = i;
    while (j < lines.length && /^\s*$/.test(lines[j])) j++;
    const nx = j < lines.length ? ITEM_RE.exec(lines[j]) : null;
    if (j !== i && nx && nx[1].length === base && /\d/.test(nx[2]) === ordered) i = j;
  }
  return [`<${tag}${startAttr}>${items.join('')}</${tag}>`, i];
}

// Entities the escaping produced; a URL stops before them (they were quotes or angle brackets).
const NOT_ENTITY = String.raw`(?!&(?:quot|lt|gt|#39);)`;
const LINK_RE = new RegExp(String.raw`\[([^\]\n]+)\]\((https?:\/\/(?:${NOT_ENTITY}[^\s)\uE000\uE001])+)\)`, 'g');
const BARE_URL_RE = new RegExp(String.raw`(^|[\s(])(https?:\/\/(?:${NOT_ENTITY}[^\s\uE000\uE001])+)`, 'g');

function anchor(href, label) {
  return `<a href="${href}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

/** Inline pass over one escaped line (or a heading's text). */
function renderInline(s, hold) {
  // Code spans first: their content is taken literally.
  s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, _t, code) => hold(`<code>${code.trim() === '' ? code : code.replace(/^ (.*) $/, '$1')}</code>`));
  s = s.replace(LINK_RE, (_, label, href) => hold(anchor(href, label)));
  s = s.replace(BARE_URL_RE, (_, pre, url) => {
    // Trailing punctuation belongs to the sentence, not the URL.
    const m = /[.,:;!?)\]]+$/.exec(url);
    const tail = m ? m[0] : '';
    const href = tail ? url.slice(0, -tail.length) : url;
    return pre + hold(anchor(href, href)) + tail;
  });
  s = s.replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>');
  s = s.replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>');
  s = s.replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?![*\w])/g, '$1<em>$2</em>');
  s = s.replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>');
  s = s.replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
  return s;
}
