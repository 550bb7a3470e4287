// The few DOM helpers every section uses. Text always goes in as text, never as HTML.

/** The element with id `id`. */
export const $ = (id) => document.getElementById(id);

/** A new `tag` element with class `cls` and text `text`. */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Fills a <dl> with [term, value, class?] rows (values are text, never HTML). */
export function setFacts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v, cls] of pairs) {
    dl.append(el('dt', '', k));
    const dd = el('dd', cls ?? '', v);
    dl.append(dd);
  }
}
