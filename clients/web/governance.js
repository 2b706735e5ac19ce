/**
 * Sphere governance on the page: creating and discovering spheres, invitations, join
 * requests, member moderation, settings, the charter, the audit log, reports, pins, threads
 * and mentions.
 *
 * Each flow opens the one panel dialog (`#panel`) with a title and content built here; the
 * server decides every right (the buttons shown per role are only a guide, and a refusal is
 * shown in the panel). Users are named by user id when inviting (handles come later).
 *
 * `Governance` is built in layers, each a class extending the previous: panel.js (the
 * dialog), access.js (spheres, invitations, requests), moderation.js, sphere-settings.js
 * (settings, charter, audit), org-portal.js (the organisation's portal and directory),
 * org-manager.js and org-policies.js (the managers' pages), and this file (bindings, the
 * sphere's tools menu, and posts: report, pins, threads, mentions).
 */

import { plainBody } from "./conversations.js";
import { actionButton, el, stamp } from "./dom.js";
import { isStaff } from "./roles.js";
import { alertLine, field, formOf, select } from "./panel.js";
import { OrgPolicyForm } from "./org-policies.js";

const REASONS = [
  ["spam", "Spam"],
  ["abusive", "Abusive"],
  ["other", "Something else"],
];

const $ = (id) => document.getElementById(id);

/** Every governance flow of the page, bound to its buttons. */
export class Governance extends OrgPolicyForm {
  constructor(chat) {
    super();
    this.chat = chat;
    this.client = chat.client;
    this.panel = $("panel");
    this.panelTitle = $("panel-title");
    this.panelBody = $("panel-body");
    this.invitationsButton = $("invitations");
    this.invitations = [];
    this.charterShown = new Set(); // spheres whose charter dialog was offered this session
  }

  bind() {
    $("panel-close").addEventListener("click", () => this.panel.close());
    $("new-sphere").addEventListener("click", () => this.openCreate());
    $("discover").addEventListener("click", () => this.openDiscover());
    this.invitationsButton.addEventListener("click", () => this.openInvitations());
    $("mentions").addEventListener("click", () => this.openMentions());
    $("org-portal").addEventListener("click", () => this.openPortal());
    $("sphere-menu").addEventListener("click", () => this.openTools(this.chat.active()));
  }


  // -- the open sphere's tools -----------------------------------------------------------------

  openTools(view) {
    if (!view || view.unavailable) return;
    const role = view.role;
    const tools = [];
    const add = (text, action, style = "") =>
      tools.push(el("li", {}, actionButton(text, "", action, style)));
    if (!role) add("Join this sphere", () => this.openJoin(view));
    add("Pinned messages", () => this.openPins(view));
    add("Threads", () => this.openThreads(view));
    if (role) add("Charter", () => this.openCharter(view));
    if (role && role !== "visitor") add("Invite someone", () => this.openInvite(view));
    if (isStaff(role)) {
      add("Pending invitations", () => this.openSphereInvitations(view));
      add("Join requests", () => this.openRequests(view));
      add("Banned users", () => this.openBans(view));
      add("Reports", () => this.openReports(view));
      add("Audit log", () => this.openAudit(view));
      add("Settings", () => this.openSettings(view));
    }
    // Every member of the organisation belongs to a global sphere, for as long as they are one.
    if (role && view.privacy !== "global") {
      add("Leave this sphere", () => this.confirm(view, "leave"));
    }
    if (role === "owner") {
      add("Delete this sphere", () => this.confirm(view, "delete"), "danger-text");
    }
    const list = el("ul", { className: "panel-list tools" }, ...tools);
    this.show(`${view.name || "Sphere"}: tools`, list);
  }


  // -- posts: report, pins, threads, mentions --------------------------------------------------

  openReport(view, post) {
    const reason = select("report-reason", REASONS, "spam");
    const comment = el("textarea", { id: "report-comment", rows: 3, maxLength: 500 });
    const status = alertLine();
    const form = formOf("Report", status, async () => {
      const done = await this.attempt(
        () => this.client.report(view.sphereId, post.offset, reason.value, comment.value.trim()),
        status,
      );
      if (done) {
        const done = el("p", { role: "status" }, "Reported to the sphere's administrators.");
        form.replaceChildren(done);
      }
    });
    form.prepend(field("Reason", reason), field("Comment (optional)", comment));
    this.show("Report this message", form);
  }

  async openPins(view) {
    const status = alertLine();
    const list = el("ol", { className: "messages panel-messages" });
    this.show("Pinned messages", status, list);
    const page = await this.attempt(() => this.client.listPins(view.sphereId), status);
    if (!page) return;
    if (!page.messages.length) status.textContent = "Nothing is pinned.";
    list.append(...page.messages.map((post) => this.chat.panelPost(view, post)));
  }

  async openThreads(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Threads", status, list);
    const page = await this.attempt(() => this.client.listThreads(view.sphereId), status);
    if (!page) return;
    if (!page.threads.length) status.textContent = "No thread yet: reply to a message.";
    for (const t of page.threads) {
      const root = t.root;
      const body = root.deleted ? "message deleted" : this.plain(root.body);
      const label = `${this.chat.displayName(root.author_id)}: ${body}`;
      const open = actionButton(label.slice(0, 80), "", () => this.openThread(view, root.offset));
      const when = ` ${t.replies} replies, last ${stamp(t.last_ts_ms)}`;
      list.append(el("li", {}, open, el("span", { className: "hint" }, when)));
    }
  }

  async openThread(view, root) {
    const status = alertLine();
    const list = el("ol", { className: "messages panel-messages" });
    list.setAttribute("aria-label", "Thread");
    this.show("Thread", status, list);
    const page = await this.attempt(() => this.client.thread(view.sphereId, root), status);
    if (!page) return;
    list.append(...[page.root, ...page.replies].map((post) => this.chat.panelPost(view, post)));
    if (!view.role) return;
    const text = el("textarea", { id: "thread-reply", rows: 2 });
    const sent = alertLine();
    const form = formOf("Reply", sent, async () => {
      const body = text.value;
      if (!body.trim()) return;
      if (await this.attempt(() => this.client.reply(view.sphereId, root, body), sent)) {
        this.openThread(view, root);
      }
    });
    form.prepend(field("Reply in this thread", text));
    this.panelBody.append(form);
  }

  async openMentions() {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Mentions", status, list);
    const page = await this.attempt(() => this.client.listMentions(), status);
    if (!page) return;
    if (!page.messages.length) status.textContent = "Nobody mentioned you yet.";
    for (const m of page.messages) {
      const where = this.chat.views.get(m.sphere_id)?.name || "a sphere";
      const text = `${where}: ${this.chat.displayName(m.author_id)}: ${this.plain(m.body)}`;
      list.append(el("li", {}, actionButton(text.slice(0, 100), "", () => {
        this.close();
        this.chat.navigate(m.sphere_id);
      })));
    }
  }

  plain(body) {
    return plainBody(body ?? "", (id) => this.chat.displayName(id));
  }

}
