/**
 * Sphere governance on the page: creating and discovering spheres, invitations, join
 * requests, member moderation, settings, the charter, the audit log, reports, pins, threads
 * and mentions.
 *
 * Each flow opens the one panel dialog (`#panel`) with a title and content built here; the
 * server decides every right (the buttons shown per role are only a guide, and a refusal is
 * shown in the panel). Users are named by user id when inviting (handles come later).
 */

import { ConnectionLostError } from "./cloison.js";
import { plainBody } from "./conversations.js";
import { actionButton, el, stamp } from "./dom.js";

const ROLES = ["owner", "admin", "publisher", "member", "visitor"];
const RANK = { owner: 5, admin: 4, publisher: 3, member: 2, visitor: 1 };
const TYPES = [
  ["private", "Private: by invitation only, invisible to others"],
  ["open", "Open: listed; anyone may enter (at once or on approval)"],
  ["public", "Public: everyone reads; members post"],
  ["restricted", "Restricted: announcements; staff post, members react and reply"],
];
const POLICIES = [
  ["free", "At once"],
  ["approval", "On approval by an administrator"],
  ["invitation", "By invitation only"],
];
const HISTORY = [
  ["since_joining", "Only what is posted after they join"],
  ["full", "The whole history"],
];
const REASONS = [
  ["spam", "Spam"],
  ["abusive", "Abusive"],
  ["other", "Something else"],
];
// Mute lengths offered, in minutes (the server accepts a minute to a year).
const MUTE_MINUTES = [
  [10, "10 minutes"],
  [60, "1 hour"],
  [1440, "1 day"],
  [10080, "1 week"],
];

export const isStaff = (role) => role === "owner" || role === "admin";
export const isPublisher = (role) => isStaff(role) || role === "publisher";

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

export class Governance {
  constructor(chat) {
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
    $("sphere-menu").addEventListener("click", () => this.openTools(this.chat.active()));
  }

  // -- the panel ---------------------------------------------------------------------------

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

  // -- spheres: create, discover, invitations ------------------------------------------------

  openCreate() {
    const name = el("input", { id: "new-sphere-name", required: true, maxLength: 100 });
    const type = select("new-sphere-type", TYPES, "private");
    const listed = el("input", { id: "new-sphere-listed", type: "checkbox" });
    const policy = select("new-sphere-policy", POLICIES, "invitation");
    const history = select("new-sphere-history", HISTORY, "since_joining");
    const status = alertLine();
    // A private sphere is sealed: never listed, entered by invitation. The other types start
    // listed and free to enter, the usual wish when choosing them.
    let wasSealed = true;
    const sync = () => {
      const sealed = type.value === "private";
      policy.disabled = sealed;
      listed.disabled = sealed;
      if (sealed !== wasSealed) {
        policy.value = sealed ? "invitation" : "free";
        listed.checked = !sealed;
      }
      wasSealed = sealed;
    };
    type.addEventListener("change", sync);
    sync();
    const form = formOf("Create", status, async () => {
      const settings = { privacy: type.value, history: history.value };
      if (type.value !== "private") {
        settings.listed = listed.checked;
        settings.join_policy = policy.value;
      }
      const reply = await this.attempt(
        () => this.client.createSphere(name.value.trim(), settings),
        status,
      );
      if (!reply) return;
      this.close();
      await this.chat.refreshSpheres();
      this.chat.navigate(reply.sphere.sphere_id);
    });
    form.prepend(
      field("Name", name),
      field("Type", type),
      checkField("Listed (shown in Discover)", listed),
      field("Who may enter", policy),
      field("What newcomers may read", history),
    );
    this.show("New sphere", form);
  }

  async openDiscover() {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Discover spheres", status, list);
    const reply = await this.attempt(() => this.client.listSpheres({ discover: true }), status);
    if (!reply) return;
    if (!reply.spheres.length) status.textContent = "No listed sphere to discover yet.";
    for (const sphere of reply.spheres) list.append(this.discoverItem(sphere, status));
  }

  discoverItem(sphere, status) {
    const item = el(
      "li",
      {},
      el("span", { className: "panel-item-name" }, sphere.name),
      el("span", { className: "hint" }, ` ${sphere.privacy}`),
    );
    item.dataset.sphereId = sphere.sphere_id;
    const enter = async () => {
      const joined = await this.attempt(() => this.client.join(sphere.sphere_id), status);
      if (!joined) return;
      this.close();
      await this.chat.refreshSpheres();
      this.chat.navigate(sphere.sphere_id);
    };
    if (sphere.role) {
      item.append(actionButton("Open", `Open ${sphere.name}`, () => this.openSphere(sphere)));
    } else if (sphere.join_policy === "approval") {
      const note = el("input", { id: `ask-${sphere.sphere_id}`, maxLength: 500 });
      const ask = actionButton("Ask to join", `Ask to join ${sphere.name}`, async () => {
        const sent = await this.attempt(
          () => this.client.requestJoin(sphere.sphere_id, note.value.trim()),
          status,
        );
        if (sent) status.textContent = `Request sent to the administrators of ${sphere.name}.`;
      });
      item.append(field(`Note to ${sphere.name} (optional)`, note), ask);
    } else if (sphere.join_policy === "free") {
      item.append(actionButton("Join", `Join ${sphere.name}`, enter));
    }
    if (sphere.privacy === "public" && !sphere.role) {
      item.append(actionButton("Read", `Read ${sphere.name}`, () => this.openSphere(sphere)));
    }
    return item;
  }

  openSphere(sphere) {
    this.close();
    this.chat.navigate(sphere.sphere_id);
  }

  async refreshInvitations() {
    try {
      const { invitations } = await this.client.listInvitations();
      this.invitations = invitations.filter((i) => i.state === "pending");
    } catch {
      return; // not answered now (offline, or an older server); the next refresh retries
    }
    const count = this.invitations.length;
    this.invitationsButton.textContent = count ? `Invitations (${count})` : "Invitations";
  }

  async openInvitations() {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Your invitations", status, list);
    await this.refreshInvitations();
    if (!this.invitations.length) status.textContent = "No pending invitation.";
    for (const invitation of this.invitations) list.append(this.invitationItem(invitation, status));
  }

  invitationItem(inv, status) {
    const item = el(
      "li",
      {},
      el("span", { className: "panel-item-name" }, inv.sphere_name),
      el(
        "span",
        { className: "hint" },
        ` as ${inv.role}, from ${inv.inviter_name}; until ${stamp(inv.expires_ms)}`,
      ),
    );
    item.dataset.invitationId = inv.invitation_id;
    const label = `the invitation to ${inv.sphere_name}`;
    const accept = actionButton("Accept", `Accept ${label}`, async () => {
      const reply = await this.attempt(
        () => this.client.acceptInvitation(inv.invitation_id),
        status,
      );
      if (!reply) return;
      this.close();
      await this.chat.refreshSpheres();
      this.refreshInvitations();
      this.chat.navigate(inv.sphere_id);
    });
    const decline = actionButton(
      "Decline",
      `Decline ${label}`,
      async () => {
        if (await this.attempt(() => this.client.declineInvitation(inv.invitation_id), status)) {
          item.remove();
          this.refreshInvitations();
        }
      },
      "danger-text",
    );
    item.append(accept, decline);
    return item;
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
    if (role) add("Leave this sphere", () => this.confirm(view, "leave"));
    if (role === "owner") {
      add("Delete this sphere", () => this.confirm(view, "delete"), "danger-text");
    }
    const list = el("ul", { className: "panel-list tools" }, ...tools);
    this.show(`${view.name || "Sphere"}: tools`, list);
  }

  /** Join a sphere read from outside (public), or ask to when it admits on approval. */
  async openJoin(view) {
    const status = alertLine();
    this.show(`Join ${view.name || "this sphere"}`, status);
    try {
      await this.client.join(view.sphereId);
    } catch (error) {
      if (error.code !== "forbidden") {
        status.textContent = explain(error);
        return;
      }
      const note = el("input", { id: "join-note", maxLength: 500 });
      const form = formOf("Ask to join", status, async () => {
        const sent = await this.attempt(
          () => this.client.requestJoin(view.sphereId, note.value.trim()),
          status,
        );
        if (sent) form.replaceChildren(el("p", { role: "status" }, "Request sent."));
      });
      form.prepend(
        el("p", {}, `${error.message}. You may ask its administrators to let you in.`),
        field("Note (optional)", note),
      );
      this.panelBody.append(form);
      return;
    }
    this.close();
    await this.chat.refreshSpheres();
  }

  openInvite(view) {
    const user = el("input", { id: "invite-user", required: true, spellcheck: false });
    const mine = RANK[view.role] ?? 0;
    const roles = ROLES.filter((r) => RANK[r] <= mine && r !== "owner").map((r) => [r, r]);
    const role = select("invite-role", roles, "member");
    const status = alertLine();
    const form = formOf("Invite", status, async () => {
      const reply = await this.attempt(
        () => this.client.invite(view.sphereId, user.value.trim(), role.value),
        status,
      );
      if (!reply) return;
      const inv = reply.invitation;
      user.value = "";
      const until = stamp(inv.expires_ms);
      status.textContent = `Invited ${inv.invitee_name} as ${inv.role}, until ${until}.`;
    });
    form.prepend(field("User id", user), field("Role", role));
    this.show(`Invite to ${view.name}`, form);
  }

  async openSphereInvitations(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Pending invitations", status, list);
    const reply = await this.attempt(() => this.client.listInvitations(view.sphereId), status);
    if (!reply) return;
    const pending = reply.invitations.filter((i) => i.state === "pending");
    if (!pending.length) status.textContent = "No pending invitation.";
    for (const inv of pending) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, inv.invitee_name),
        el("span", { className: "hint" }, ` as ${inv.role}, by ${inv.inviter_name}`),
        el("span", { className: "hint" }, `; until ${stamp(inv.expires_ms)}`),
      );
      const revoke = async () => {
        const done = await this.attempt(
          () => this.client.revokeInvitation(inv.invitation_id),
          status,
        );
        if (done) item.remove();
      };
      const label = `Revoke the invitation of ${inv.invitee_name}`;
      item.append(actionButton("Revoke", label, revoke, "danger-text"));
      list.append(item);
    }
  }

  async openRequests(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Join requests", status, list);
    const reply = await this.attempt(() => this.client.listRequests(view.sphereId), status);
    if (!reply) return;
    if (!reply.requests.length) status.textContent = "No pending request.";
    for (const request of reply.requests) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, request.name),
        el("span", { className: "hint" }, request.comment ? `: ${request.comment}` : ""),
      );
      const answer = (accept) => async () => {
        const done = await this.attempt(
          () => this.client.answerRequest(view.sphereId, request.user_id, accept),
          status,
        );
        if (done) item.remove();
      };
      item.append(
        actionButton("Accept", `Accept ${request.name}`, answer(true)),
        actionButton("Refuse", `Refuse ${request.name}`, answer(false), "danger-text"),
      );
      list.append(item);
    }
  }

  async openBans(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Banned users", status, list);
    const reply = await this.attempt(() => this.client.listBans(view.sphereId), status);
    if (!reply) return;
    if (!reply.bans.length) status.textContent = "Nobody is banned.";
    for (const ban of reply.bans) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, ban.name),
        el("span", { className: "hint" }, ` ${stamp(ban.ts_ms)}`),
        el("span", { className: "hint" }, ban.reason ? `: ${ban.reason}` : ""),
      );
      item.append(
        actionButton("Lift the ban", `Lift the ban on ${ban.name}`, async () => {
          if (await this.attempt(() => this.client.unban(view.sphereId, ban.user_id), status)) {
            item.remove();
          }
        }),
      );
      list.append(item);
    }
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

  async openReports(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Reports", status, list);
    const page = await this.attempt(() => this.client.listReports(view.sphereId), status);
    if (!page) return;
    if (!page.reports.length) status.textContent = "No report.";
    for (const r of page.reports) {
      const by = this.chat.displayName(r.reporter_id);
      const comment = el("span", { className: "hint" }, r.comment ? `: ${r.comment}` : "");
      list.append(el("li", {}, `#${r.target} ${r.reason} by ${by}, ${stamp(r.ts_ms)}`, comment));
    }
  }

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

  // -- charter -------------------------------------------------------------------------------

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

  // -- members ---------------------------------------------------------------------------------

  /** The moderation controls of one member in the people list, or nothing. */
  memberControls(view, member) {
    const mine = RANK[view.role] ?? 0;
    if (!isStaff(view.role) || member.user_id === this.chat.me?.user_id) return null;
    if ((RANK[member.role] ?? 0) >= mine) return null;
    const name = member.name;
    const controls = el("div", { className: "member-actions" });
    const muted = Boolean(member.mutedUntil && member.mutedUntil > Date.now());
    const lower = ROLES.filter((r) => RANK[r] < mine).map((r) => [r, r]);
    const role = select(`role-${member.user_id}`, lower, member.role);
    role.setAttribute("aria-label", `Role of ${name}`);
    role.addEventListener("change", () =>
      this.memberAct(view, () => this.client.setRole(view.sphereId, member.user_id, role.value)),
    );
    controls.append(
      role,
      actionButton("Remove", `Remove ${name}`, () =>
        this.memberAct(view, () => this.client.removeMember(view.sphereId, member.user_id)),
      ),
      muted
        ? actionButton("Unmute", `Unmute ${name}`, () =>
            this.memberAct(view, () => this.client.unmute(view.sphereId, member.user_id)),
          )
        : actionButton("Mute", `Mute ${name}`, () => this.openMute(view, member)),
      actionButton("Ban", `Ban ${name}`, () => this.openBan(view, member), "danger-text"),
    );
    return controls;
  }

  async memberAct(view, work) {
    try {
      await work();
    } catch (error) {
      this.chat.showPeopleError(explain(error));
    }
  }

  openMute(view, member) {
    const length = select("mute-length", MUTE_MINUTES, "60");
    const status = alertLine();
    const form = formOf("Mute", status, async () => {
      const seconds = Number(length.value) * 60;
      const mute = () => this.client.mute(view.sphereId, member.user_id, seconds);
      const done = await this.attempt(mute, status);
      if (done) this.close();
    });
    form.prepend(
      el("p", {}, `${member.name} can read but not write while muted.`),
      field("For", length),
    );
    this.show(`Mute ${member.name}`, form);
  }

  openBan(view, member) {
    const reason = el("input", { id: "ban-reason", maxLength: 500 });
    const status = alertLine();
    const form = formOf("Ban", status, async () => {
      const done = await this.attempt(
        () => this.client.ban(view.sphereId, member.user_id, reason.value.trim()),
        status,
      );
      if (done) this.close();
    });
    form.querySelector("button[type=submit]").className = "danger";
    form.prepend(
      el(
        "p",
        {},
        `${member.name} is removed and cannot come back, be invited or ask to join ` +
          "until the ban is lifted.",
      ),
      field("Reason (optional, for the audit log)", reason),
    );
    this.show(`Ban ${member.name}?`, form);
  }
}

// -- form builders ---------------------------------------------------------------------------

function field(text, control) {
  const wrap = el("div", { className: "field" });
  const label = el("label", { htmlFor: control.id }, text);
  wrap.append(label, control);
  return wrap;
}

function checkField(text, control) {
  const wrap = el("div", { className: "field check" });
  wrap.append(control, el("label", { htmlFor: control.id }, text));
  return wrap;
}

function select(id, options, value) {
  const node = el("select", { id });
  for (const [optionValue, text] of options) {
    node.append(el("option", { value: String(optionValue) }, text));
  }
  if (value !== undefined && value !== null) node.value = String(value);
  return node;
}

function alertLine() {
  return el("p", { className: "form-error", role: "alert" });
}

/** A form that runs `onSubmit` (once at a time) when sent, with `status` above its button. */
function formOf(submitText, status, onSubmit) {
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

function charterText(charter) {
  const text = el("div", { className: "charter-text" }, charter.text);
  text.setAttribute("tabindex", "0");
  text.setAttribute("aria-label", `Charter, version ${charter.version}`);
  return text;
}

function row(cell, ...values) {
  return el("tr", {}, ...values.map((v) => el(cell, cell === "th" ? { scope: "col" } : {}, v)));
}
