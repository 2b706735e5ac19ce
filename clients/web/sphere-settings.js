/**
 * sphere-settings.js: a sphere's settings, leaving or deleting it, its charter (reading,
 * setting, accepting) and its audit log.
 */

import { actionButton, el, stamp } from "./dom.js";
import { isPublisher } from "./roles.js";
import { alertLine, charterText, checkField, field, formOf, row, select } from "./panel.js";
import { HISTORY, POLICIES, TYPES } from "./governance-options.js";
import { Moderation } from "./moderation.js";

/** The settings, charter and audit layer of `Governance`. */
export class SphereSettings extends Moderation {
  openSettings(view) {
    const name = el("input", { id: "settings-name", value: view.name, maxLength: 100 });
    const type = select("settings-type", TYPES, view.privacy);
    const listed = el("input", { id: "settings-listed", type: "checkbox", checked: view.listed });
    const policy = select("settings-policy", POLICIES, view.joinPolicy);
    const history = select("settings-history", HISTORY, view.history);
    const owner = view.role === "owner";
    type.disabled = !owner;
    history.disabled = !owner;
    const status = alertLine();
    const form = formOf("Save", status, async () => {
      const change = {};
      if (name.value.trim() !== view.name) change.name = name.value.trim();
      if (type.value !== view.privacy) change.privacy = type.value;
      if (listed.checked !== view.listed) change.listed = listed.checked;
      if (policy.value !== view.joinPolicy) change.join_policy = policy.value;
      if (history.value !== view.history) change.history = history.value;
      if (!Object.keys(change).length) return this.close();
      if (await this.attempt(() => this.client.updateSphere(view.sphereId, change), status)) {
        this.close();
        this.chat.refreshSpheres();
      }
    });
    form.prepend(
      field("Name", name),
      field("Type (owner)", type),
      checkField("Listed (shown in Discover)", listed),
      field("Who may enter", policy),
      field("What newcomers may read (owner; only narrowed once others joined)", history),
    );
    this.show("Settings", form);
  }

  confirm(view, what) {
    const leaving = what === "leave";
    const status = alertLine();
    const text = leaving
      ? "You stop receiving its messages; to come back you may need a new invitation."
      : "Every message, member and setting of this sphere is erased for everyone. " +
        "This cannot be undone.";
    const form = formOf(leaving ? "Leave" : "Delete the sphere", status, async () => {
      const work = leaving
        ? () => this.client.leave(view.sphereId)
        : () => this.client.deleteSphere(view.sphereId);
      if (!(await this.attempt(work, status))) return;
      this.close();
      this.chat.forget(view.sphereId);
    });
    form.querySelector("button[type=submit]").className = "danger";
    form.prepend(el("p", {}, text));
    this.show(leaving ? `Leave ${view.name}?` : `Delete ${view.name}?`, form);
  }

  async openCharter(view) {
    const status = alertLine();
    this.show("Charter", status);
    const charter = await this.attempt(() => this.client.getCharter(view.sphereId), status);
    if (!charter) return;
    const content = [status];
    if (charter.version) content.push(charterText(charter));
    else content.push(el("p", {}, "This sphere has no charter."));
    if (isPublisher(view.role)) {
      const text = el("textarea", { id: "charter-text", rows: 8, value: charter.text });
      const saved = alertLine();
      const form = formOf("Save the charter", saved, async () => {
        if (await this.attempt(() => this.client.setCharter(view.sphereId, text.value), saved)) {
          saved.textContent = text.value
            ? "Charter saved; members accept it before reading on."
            : "Charter removed.";
        }
      });
      form.prepend(field("Text (empty removes it)", text));
      content.push(form);
    }
    this.show("Charter", ...content);
  }

  /** The sphere needs its charter accepted before it can be read: ask, once per session. */
  async charterRequired(view, { force = false } = {}) {
    if (!force && this.charterShown.has(view.sphereId)) return;
    this.charterShown.add(view.sphereId);
    const status = alertLine();
    const charter = await this.attempt(() => this.client.getCharter(view.sphereId), status);
    if (!charter?.version) return;
    const form = formOf("Accept the charter", status, async () => {
      const done = await this.attempt(
        () => this.client.acceptCharter(view.sphereId, charter.version),
        status,
      );
      if (!done) return;
      this.close();
      view.charterAccepted = charter.version;
      this.chat.resubscribe(view);
    });
    const later = actionButton("Not now", "", () => this.close());
    form.querySelector(".dialog-actions").prepend(later);
    form.prepend(
      el("p", {}, `${view.name || "This sphere"} asks its members to accept its charter first.`),
      charterText(charter),
    );
    this.show(`Charter of ${view.name || "this sphere"}`, form);
  }

  async openAudit(view) {
    const status = alertLine();
    const body = el("tbody");
    const table = el(
      "table",
      { className: "audit" },
      el("caption", { className: "visually-hidden" }, "Audit log, newest first"),
      el("thead", {}, row("th", "When", "Who", "Action", "To whom", "Post")),
      body,
    );
    const more = actionButton("Older entries", "", () => load());
    more.hidden = true;
    this.show("Audit log", status, table, more);
    let before;
    const load = async () => {
      const read = () => this.client.listAudit(view.sphereId, { before });
      const page = await this.attempt(read, status);
      if (!page) return;
      for (const e of page.entries) {
        const target = e.target_id ? this.chat.displayName(e.target_id) : "";
        const action = e.detail ? `${e.action} (${e.detail})` : e.action;
        const post = e.offset ? `#${e.offset}` : "";
        body.append(
          row("td", stamp(e.ts_ms), this.chat.displayName(e.actor_id), action, target, post),
        );
      }
      before = page.entries.at(-1)?.seq;
      more.hidden = !page.has_more;
    };
    await load();
  }
}
