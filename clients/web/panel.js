/**
 * panel.js: the one panel dialog (`#panel`) the governance flows share, refusals in words,
 * and the form builders of its content.
 */

import { ConnectionLostError } from "./cloison.js";
import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);

/** A refusal in words the reader can act on. */
export function explain(error) {
  if (error instanceof ConnectionLostError) return "The connection dropped; try again.";
  const known = {
    not_found: "Not found: it does not exist, or it is hidden from you.",
    forbidden: "You are not allowed to do that here.",
    rate_limited: "Too many requests; wait a moment.",
    charter_required: "Accept the sphere's charter first.",
  };
  return known[error?.code] ?? (error?.message || String(error));
}

/** The panel dialog: the base layer of `Governance` (governance.js). */
export class GovernancePanel {
  show(title, ...content) {
    this.panelTitle.textContent = title;
    this.panelBody.replaceChildren(...content);
    if (!this.panel.open) this.panel.showModal();
    const first = this.panelBody.querySelector("input, select, textarea, button");
    (first ?? $("panel-close")).focus();
  }

  close() {
    if (this.panel.open) this.panel.close();
  }

  /** Run `work`; on a refusal, say why in `status` (a role=alert line) and return null. */
  async attempt(work, status) {
    status.textContent = "";
    try {
      return (await work()) ?? true;
    } catch (error) {
      status.textContent = explain(error);
      return null;
    }
  }
}

export function field(text, control) {
  const wrap = el("div", { className: "field" });
  const label = el("label", { htmlFor: control.id }, text);
  wrap.append(label, control);
  return wrap;
}

export function checkField(text, control) {
  const wrap = el("div", { className: "field check" });
  wrap.append(control, el("label", { htmlFor: control.id }, text));
  return wrap;
}

export function select(id, options, value) {
  const node = el("select", { id });
  for (const [optionValue, text] of options) {
    node.append(el("option", { value: String(optionValue) }, text));
  }
  if (value !== undefined && value !== null) node.value = String(value);
  return node;
}

export function alertLine() {
  return el("p", { className: "form-error", role: "alert" });
}

/** A form that runs `onSubmit` (once at a time) when sent, with `status` above its button. */
export function formOf(submitText, status, onSubmit) {
  const form = el("form", { className: "panel-form" });
  const submit = el("button", { type: "submit", className: "primary" }, submitText);
  form.append(status, el("div", { className: "dialog-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity() || submit.disabled) return;
    submit.disabled = true;
    try {
      await onSubmit();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function charterText(charter) {
  const text = el("div", { className: "charter-text" }, charter.text);
  text.setAttribute("tabindex", "0");
  text.setAttribute("aria-label", `Charter, version ${charter.version}`);
  return text;
}

export function row(cell, ...values) {
  return el("tr", {}, ...values.map((v) => el(cell, cell === "th" ? { scope: "col" } : {}, v)));
}
