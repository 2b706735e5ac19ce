/**
 * chat.js: the chat controller: it binds the client's events and the page, keeps the sphere
 * list and one view model per sphere, and opens, subscribes and forgets spheres.
 * Stream handling is in chat-timeline.js, rendering in chat-render.js.
 */

import { ConnectionLostError } from "./cloison.js";
import { Governance } from "./governance.js";
import { ROUTE_PREFIX } from "./views.js";
import { ui } from "./page.js";
import { signOut } from "./signin.js";
import { bindComposer } from "./composer.js";
import { bindDrawers, closeDrawers } from "./drawers.js";
import { ChatTimeline } from "./chat-timeline.js";
import { OrgState } from "./org-state.js";

// Membership events reach followed spheres only: re-list spheres now and then to learn about
// spheres the user was added to.
const SPHERE_REFRESH_MS = 60_000;

/** What the page knows about one sphere. */
function newSphereView(sphereId) {
  return {
    sphereId,
    name: "",
    privacy: "",
    role: null, // null: not a member (reading a public sphere)
    posts: new Map(), // offset -> post in its current state
    orphans: new Map(), // target offset -> latest edit/delete of a post not loaded yet
    pending: new Map(), // message_id -> {body, error} of posts not yet delivered back
    members: [],
    loadingMembers: false,
    online: new Set(),
    typing: new Map(), // user_id -> timer hiding the notice
    historyBefore: null, // offsets below this come from `history`, the rest live
    oldestLoaded: null,
    hasOlder: true,
    loadingOlder: false,
    loaded: false,
    generation: 0, // bumped on reset, so late history replies for old state are dropped
    readOffset: 0,
    serverOffset: 0,
    serverUnread: 0,
    unavailable: "", // why the sphere cannot be shown (not found, no access)
    listed: false,
    joinPolicy: "invitation",
    history: "since_joining",
    charterVersion: 0,
    charterAccepted: 0,
    charterDue: false, // the charter must be accepted before the sphere can be read
    mutedUntil: null, // ms: the user may not write before then
  };
}

/** The signed-in page: its methods span chat.js, chat-timeline.js and chat-render.js. */
export class Chat extends ChatTimeline {
  constructor(client) {
    super();
    this.client = client;
    this.views = new Map();
    this.names = new Map();
    this.activeId = null;
    this.editing = null; // {sphereId, offset} while the composer edits a post
    this.replying = null; // {sphereId, offset} while the composer answers a post
    this.orgs = new OrgState(client);
    this.governance = new Governance(this);
    this.markReadTimer = null;
    this.refreshTimer = null;
    this.rendered = new Map(); // offset -> <li> of the active sphere
    this.maxMessageBytes = Infinity; // until welcome announces the limit
  }

  start() {
    this.bindClient();
    this.bindPage();
    // A refused token also arrives as a "closed" state, handled there.
    this.client.connect().catch(() => {});
  }

  bindClient() {
    const c = this.client;
    c.on("state", (detail) => this.onState(detail));
    c.on("welcome", (welcome) => this.onWelcome(welcome));
    c.on("subscribed", (detail) => this.onSubscribed(detail));
    c.on("reset", ({ sphereId }) => this.onReset(sphereId));
    c.on("message", (frame) => this.onEvent(frame));
    c.on("presence", (frame) => this.onPresence(frame));
    c.on("typing", ({ sphereId, userId }) => this.onTyping(sphereId, userId));
    c.on("unsubscribed", ({ sphereId, reason }) => this.onAccessLost(sphereId, reason));
    c.on("charter_required", ({ sphereId }) => this.onCharterRequired(sphereId));
  }

  bindPage() {
    window.addEventListener("hashchange", () => this.openFromHash());
    window.addEventListener("online", () => this.client.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState !== "visible") return;
      this.refreshSpheres();
      this.scheduleMarkRead();
    });
    ui.signout.addEventListener("click", () => {
      this.client.close();
      signOut();
    });
    ui.skipLink.addEventListener("click", (event) => {
      event.preventDefault(); // the fragment would be taken for a sphere route
      (ui.composerInput.disabled ? ui.timeline : ui.composerInput).focus();
    });
    ui.timeline.addEventListener("scroll", () => this.onScroll(), { passive: true });
    ui.loadOlder.addEventListener("click", () => this.loadOlder(this.active()));
    bindComposer(this);
    bindDrawers();
    this.governance.bind();
    this.orgs.bind();
    ui.cancelReply.addEventListener("click", () => {
      this.endReply();
      ui.composerInput.focus();
    });
    ui.charterPrompt.addEventListener("click", () => {
      const view = this.active();
      if (view) this.governance.charterRequired(view, { force: true });
    });
    ui.confirmDelete.addEventListener("close", () => this.onDeleteConfirmed());
  }

  active() {
    return this.activeId ? this.views.get(this.activeId) : null;
  }

  // -- connection --

  onState({ state, error }) {
    ui.connection.dataset.state = state;
    const text = {
      connecting: "Connecting…",
      online: "Online",
      reconnecting: "Reconnecting…",
      closed: "Offline",
    }[state];
    ui.connectionText.textContent = text ?? state;
    if (state === "closed" && error) this.onTerminal(error);
  }

  onTerminal(error) {
    if (error.code === "unauthorized") {
      signOut("This token was not accepted. It may have expired or been revoked.");
      return;
    }
    if (error instanceof ConnectionLostError) return; // closed by sign-out
    ui.connectionText.textContent = `Offline: ${error.message}. Reload the page to retry.`;
  }

  onWelcome(welcome) {
    this.me = welcome;
    this.names.set(welcome.user_id, welcome.name);
    ui.meName.textContent = welcome.name;
    this.maxMessageBytes = welcome.limits?.max_message_bytes ?? Infinity;
    this.refreshSpheres();
    this.orgs.load();
    clearInterval(this.refreshTimer);
    this.refreshTimer = setInterval(() => this.refreshSpheres(), SPHERE_REFRESH_MS);
  }

  // -- spheres --

  async refreshSpheres() {
    if (this.client.state !== "online") return;
    let reply;
    try {
      reply = await this.client.listSpheres();
    } catch {
      return; // the connection dropped; the next welcome lists again
    }
    const listed = new Set();
    for (const info of reply.spheres) {
      listed.add(info.sphere_id);
      let view = this.views.get(info.sphere_id);
      if (!view) {
        view = newSphereView(info.sphere_id);
        this.views.set(info.sphere_id, view);
        this.subscribe(view);
      }
      Object.assign(view, {
        name: info.name,
        privacy: info.privacy,
        role: info.role ?? null,
        readOffset: info.read_offset ?? 0,
        serverOffset: info.offset,
        serverUnread: info.unread ?? 0,
        listed: info.listed ?? false,
        joinPolicy: info.join_policy ?? "invitation",
        history: info.history ?? "since_joining",
        charterVersion: info.charter_version ?? 0,
        charterAccepted: info.charter_accepted ?? 0,
        mutedUntil: info.muted_until_ms ?? null,
      });
    }
    for (const view of this.views.values()) {
      if (view.role && !listed.has(view.sphereId)) this.onAccessLost(view.sphereId);
    }
    this.renderSphereList();
    this.governance.refreshInvitations();
    if (!this.activeId) this.openFromHash();
    else if (this.active()) {
      this.renderHeader(this.active());
      this.renderComposer(this.active());
    }
  }

  /** Open a sphere by its route, as a link would. */
  navigate(sphereId) {
    const route = ROUTE_PREFIX + encodeURIComponent(sphereId);
    if (location.hash === route) this.open(sphereId);
    else location.hash = route;
  }

  /** The user left or deleted a sphere: drop it and show the first remaining one. */
  forget(sphereId) {
    this.client.unsubscribe(sphereId).catch(() => {});
    this.views.delete(sphereId);
    if (this.activeId === sphereId) {
      this.activeId = null;
      history.replaceState(null, "", location.pathname + location.search);
      this.renderActive();
    }
    this.renderSphereList();
    this.openFromHash();
  }

  onCharterRequired(sphereId) {
    const view = this.views.get(sphereId);
    if (!view) return;
    view.charterDue = true;
    if (sphereId === this.activeId) this.renderActive();
    this.governance.charterRequired(view);
  }

  /** Follow a sphere again once its charter is accepted. */
  resubscribe(view) {
    view.charterDue = false;
    this.subscribe(view);
    if (view.sphereId === this.activeId) this.renderActive();
  }

  subscribe(view) {
    this.client.subscribe(view.sphereId).catch((error) => {
      if (error instanceof ConnectionLostError) return;
      if (error.code === "charter_required") return; // the "charter_required" event asks
      const reason =
        error.code === "forbidden"
          ? "You are not a member of this sphere."
          : "Sphere not found. It does not exist, or you are not a member.";
      this.makeUnavailable(view, reason);
    });
  }

  /** Forget a sphere's content; while it is open, say why it is empty. */
  makeUnavailable(view, reason) {
    Object.assign(view, { role: null, unavailable: reason, posts: new Map(), pending: new Map() });
    if (view.sphereId === this.activeId) this.renderActive();
    else this.views.delete(view.sphereId);
    this.renderSphereList();
  }

  openFromHash() {
    // Routes are "#/<sphere_id>"; other fragments are in-page links (the skip link).
    const route = location.hash.startsWith(ROUTE_PREFIX) ? location.hash : "";
    const wanted = decodeURIComponent(route.slice(ROUTE_PREFIX.length));
    const first = this.sortedViews().find((v) => v.role)?.sphereId;
    const sphereId = wanted || first;
    if (sphereId) this.open(sphereId);
  }

  open(sphereId) {
    let view = this.views.get(sphereId);
    if (view?.unavailable) {
      this.views.delete(sphereId);
      view = null;
    }
    if (!view) {
      // Not one of ours: perhaps a public sphere. The server decides; a private sphere we do
      // not belong to answers exactly like one that does not exist.
      view = newSphereView(sphereId);
      this.views.set(sphereId, view);
      this.subscribe(view);
    }
    this.endEdit();
    this.endReply();
    if (this.activeId && this.activeId !== sphereId) {
      const left = this.views.get(this.activeId);
      if (left?.unavailable) this.views.delete(left.sphereId);
    }
    this.activeId = sphereId;
    this.renderActive();
    // Chosen from a drawer: focus would otherwise stay on a link that is now hidden.
    if (closeDrawers() && !ui.composerInput.disabled) ui.composerInput.focus();
    if (view.historyBefore !== null && !view.loaded) this.loadOlder(view);
    this.loadMembers(view);
  }

  onAccessLost(sphereId, reason = "access_revoked") {
    const view = this.views.get(sphereId);
    if (!view) return;
    this.client.unsubscribe(sphereId).catch(() => {});
    const why =
      reason === "deleted"
        ? "This sphere was deleted."
        : "You no longer have access to this sphere.";
    this.makeUnavailable(view, why);
  }

  sortedViews() {
    return [...this.views.values()]
      .filter((v) => v.role)
      .sort((a, b) => a.name.localeCompare(b.name) || a.sphereId.localeCompare(b.sphereId));
  }

  async loadMembers(view) {
    // Called for every unknown author or presence; one request per sphere at a time is enough.
    if (!view.role || view.loadingMembers) return;
    view.loadingMembers = true;
    try {
      const { members } = await this.client.listMembers(view.sphereId);
      view.members = members;
      for (const m of members) this.names.set(m.user_id, m.name);
    } catch {
      return;
    } finally {
      view.loadingMembers = false;
    }
    if (view.sphereId !== this.activeId) return;
    this.renderPeople(view);
    for (const author of ui.messages.querySelectorAll("[data-author-id]")) {
      author.textContent = this.displayName(author.dataset.authorId);
    }
  }

  displayName(userId) {
    if (!userId) return "deleted user"; // an event without author: what a deleted account left
    return this.names.get(userId) ?? `user ${userId.slice(-6)}`;
  }
}
