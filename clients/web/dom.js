/**
 * Small DOM helpers shared by the page's modules. User content only ever goes in as text.
 */

/** A new element with `props` set and `children` (nodes, or strings added as text) appended. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key in node && !key.includes("-")) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/** A text-style button with its own accessible name (`label`) when `text` is too short. */
export function actionButton(text, label, onClick, extraClass = "") {
  const button = el("button", { type: "button", className: `link-button ${extraClass}` }, text);
  if (label) button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

const stampFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A date and time for lists (audit log, invitations, bans). */
export function stamp(tsMs) {
  return stampFormat.format(new Date(tsMs));
}
