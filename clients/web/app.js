/**
 * The Cloison web page: sign-in, sphere list, timeline, composer, typing and presence.
 * Governance flows (invitations, moderation, settings, charter, audit) live in governance.js,
 * reactions, replies and mentions in conversations.js, the DOM builders in views.js.
 *
 * All protocol work (reconnect, resume, dedupe, outbox) lives in cloison.js; this file keeps
 * a view model per sphere and renders it. User content is only ever put in the page with
 * `textContent`, never parsed as HTML.
 */

import { CloisonClient, ConnectionLostError, newMessageId } from "./cloison.js";
import {
  applyPin,
  applyReaction,
  emojiPicker,
  plainBody,
  reactionBar,
  replyContext,
  withMentions,
} from "./conversations.js";
import { actionButton, el } from "./dom.js";
import { explain, Governance, isPublisher, isStaff } from "./governance.js";
import {
  applyChangeTo,
  badge,
  noticeItem,
  pendingItem,
  personItem,
  postItem,
  ROUTE_PREFIX,
  sphereItem,
  timelineStatus,
  timeOf,
  typingText,
} from "./views.js";

const TOKEN_KEY = "cloison.token";
// Carries a sign-in error across the reload that resets the page after a refused token.
const SIGNIN_ERROR_KEY = "cloison.signin-error";
// Posts per history request: a screenful or two on a desktop.
const HISTORY_PAGE_SIZE = 50;
// The protocol has no "stopped typing" notice; hide the indicator this long after the last.
const TYPING_SHOWN_MS = 5_000;
// Coalesce read-marker updates while messages stream in.
const MARK_READ_DELAY_MS = 500;
// Membership events reach followed spheres only: re-list spheres now and then to learn about
// spheres the user was added to.
const SPHERE_REFRESH_MS = 60_000;
// "At the bottom" tolerance, so a sub-pixel scroll position still follows new messages.
const NEAR_BOTTOM_PX = 48;
// Start loading older messages this close to the top, before the reader hits it.
const LOAD_OLDER_PX = 200;
// Screen readers get the last few announcements; older ones are pruned.
const ANNOUNCEMENTS_KEPT = 5;


const $ = (id) => document.getElementById(id);

const ui = {
  signin: $("signin"),
  signinForm: $("signin-form"),
  tokenInput: $("token-input"),
  signinError: $("signin-error"),
  chat: $("chat"),
  connection: $("connection"),
  connectionText: $("connection-text"),
  meName: $("me-name"),
  signout: $("signout"),
  skipLink: $("skip-link"),
  spheres: $("spheres"),
  sphereList: $("sphere-list"),
  noSpheres: $("no-spheres"),
  toggleSpheres: $("toggle-spheres"),
  togglePeople: $("toggle-people"),
  peoplePanel: $("people-panel"),
  people: $("people"),
  scrim: $("scrim"),
  sphereTitle: $("sphere-title"),
  timeline: $("timeline"),
  loadOlder: $("load-older"),
  timelineStatus: $("timeline-status"),
  messages: $("messages"),
  outbox: $("outbox"),
  typing: $("typing"),
  composer: $("composer"),
  composerLabel: $("composer-label"),
  composerInput: $("composer-input"),
  composerError: null, // created on demand, see showComposerError
  send: $("send"),
  editing: $("editing"),
  cancelEdit: $("cancel-edit"),
  replying: $("replying"),
  replyingText: $("replying-text"),
  cancelReply: $("cancel-reply"),
  sphereMenu: $("sphere-menu"),
  charterPrompt: $("charter-prompt"),
  peopleError: $("people-error"),
  announcer: $("announcer"),
  confirmDelete: $("confirm-delete"),
};


// -- sign-in -------------------------------------------------------------------------------

function boot() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const error = sessionStorage.getItem(SIGNIN_ERROR_KEY);
  sessionStorage.removeItem(SIGNIN_ERROR_KEY);
  ui.signinForm.addEventListener("submit", onSignIn);
  if (token) {
    startChat(token);
  } else {
    showSignIn(error ?? "");
  }
}

function showSignIn(error) {
  ui.chat.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.textContent = error;
  ui.tokenInput.setAttribute("aria-invalid", error ? "true" : "false");
  ui.tokenInput.focus();
}

function onSignIn(event) {
  event.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (!token) {
    showSignIn("Enter your access token.");
    return;
  }
  // sessionStorage, not localStorage: the token dies with the tab. Never in the URL, where
  // it would end up in history, logs and Referer headers.
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.tokenInput.value = "";
  startChat(token);
}

/** Forget the token and start over from a clean page (all state lives in memory). */
function signOut(error = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  if (error) sessionStorage.setItem(SIGNIN_ERROR_KEY, error);
  location.reload();
}

function startChat(token) {
  ui.signin.hidden = true;
  ui.chat.hidden = false;
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const chat = new Chat(new CloisonClient(url.href, token));
  chat.start();
}

// -- the chat --------------------------------------------------------------------------------

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

class Chat {
  constructor(client) {
    this.client = client;
    this.views = new Map();
    this.names = new Map();
    this.activeId = null;
    this.editing = null; // {sphereId, offset} while the composer edits a post
    this.replying = null; // {sphereId, offset} while the composer answers a post
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
    return this.names.get(userId) ?? `user ${userId.slice(-6)}`;
  }

  // -- stream events --

  onSubscribed({ sphereId, position, online }) {
    const view = this.views.get(sphereId);
    if (!view) return;
    view.online = new Set(online);
    if (view.historyBefore === null) view.historyBefore = position.offset + 1;
    if (sphereId !== this.activeId) return;
    this.renderPeople(view);
    if (!view.loaded) this.loadOlder(view);
  }

  onReset(sphereId) {
    const view = this.views.get(sphereId);
    if (!view) return;
    Object.assign(view, {
      posts: new Map(),
      orphans: new Map(),
      historyBefore: null,
      oldestLoaded: null,
      hasOlder: true,
      loaded: false,
      generation: view.generation + 1,
    });
    if (sphereId === this.activeId) this.renderActive();
  }

  onEvent(event) {
    const view = this.views.get(event.sphere_id);
    if (!view) return;
    if (event.kind === "post") {
      this.addPost(view, event);
      this.onLivePost(view, event);
    } else if (event.kind === "member" || event.kind === "sphere") {
      this.addPost(view, event); // shown in the timeline as a notice
      this.applyMembership(view, event);
    } else if (event.kind === "edit" || event.kind === "delete") {
      this.applyChange(view, event);
    } else if (event.kind === "react" || event.kind === "unreact") {
      this.applyToPost(view, event, applyReaction);
    } else if (event.kind === "pin" || event.kind === "unpin") {
      this.applyToPost(view, event, applyPin);
      this.addPost(view, event); // "alice pinned a message", in the timeline
    } // a kind from a newer server: it takes its offset and shows nothing

    this.renderBadge(view);
    if (view.sphereId === this.activeId) this.scheduleMarkRead();
  }

  addPost(view, post) {
    const copy = { ...post };
    const change = view.orphans.get(post.offset);
    if (change) {
      view.orphans.delete(post.offset);
      applyChangeTo(copy, change);
    }
    view.posts.set(post.offset, copy);
    if (view.sphereId === this.activeId) this.renderPost(view, copy);
  }

  onLivePost(view, post) {
    const mine = post.author_id === this.me?.user_id;
    if (mine && view.pending.delete(post.message_id)) {
      ui.outbox.querySelector(`[data-message-id="${CSS.escape(post.message_id)}"]`)?.remove();
    }
    this.clearTyping(view, post.author_id);
    if (!mine && view.sphereId === this.activeId) {
      const text = post.body ? plainBody(post.body, (id) => this.displayName(id)) : "";
      announce(`${this.displayName(post.author_id)}: ${text || "message deleted"}`);
    }
    if (!this.names.has(post.author_id)) this.loadMembers(view);
  }

  applyMembership(view, event) {
    if (event.kind === "sphere") {
      this.applySettings(view, event);
      return;
    }
    const userId = event.member_id;
    if (event.member_name) this.names.set(userId, event.member_name);
    const known = view.members.find((m) => m.user_id === userId);
    const others = view.members.filter((m) => m.user_id !== userId);
    let mutedUntil = known?.mutedUntil ?? null;
    if (event.action === "muted") mutedUntil = event.until_ms ?? null;
    if (event.action === "unmuted") mutedUntil = null;
    // A ban, a removal or a departure carries no role: the member is gone from the list.
    const member = { ...known, user_id: userId, name: this.displayName(userId), role: event.role };
    view.members = event.role ? [...others, { ...member, mutedUntil }] : others;
    if (userId === this.me?.user_id) {
      view.role = event.role ?? null;
      view.mutedUntil = mutedUntil;
      if (view.sphereId === this.activeId) this.renderComposer(view);
      // setTimeout takes at most 2^31 - 1 ms (24.8 days); a longer mute needs no timer today.
      const wait = mutedUntil ? mutedUntil - Date.now() : 0;
      if (wait > 0 && wait < 2 ** 31) setTimeout(() => this.renderComposer(this.active()), wait);
    }
    if (view.sphereId === this.activeId) this.renderPeople(view);
  }

  applySettings(view, event) {
    Object.assign(view, {
      name: event.name ?? view.name,
      privacy: event.privacy ?? view.privacy,
      listed: event.listed ?? view.listed,
      joinPolicy: event.join_policy ?? view.joinPolicy,
      history: event.history ?? view.history,
      charterVersion: event.charter_version ?? view.charterVersion,
    });
    this.renderSphereList();
    if (view.sphereId === this.activeId) this.renderHeader(view);
    const mine = event.author_id === this.me?.user_id;
    if (view.role && !mine && view.charterVersion > view.charterAccepted) {
      this.governance.charterRequired(view, { force: true });
    }
  }

  /** A reaction or pin changes a post already loaded (history brings the others as they are). */
  applyToPost(view, event, apply) {
    const post = view.posts.get(event.target);
    if (!post || post.kind !== "post") return;
    if (apply(post, event) === false) return;
    if (view.sphereId === this.activeId) this.renderPost(view, post);
  }

  applyChange(view, change) {
    const post = view.posts.get(change.target);
    if (!post) {
      // Its post is older than what is loaded: keep the change for when history brings it.
      const known = view.orphans.get(change.target);
      if (!known || known.offset < change.offset) view.orphans.set(change.target, change);
      return;
    }
    applyChangeTo(post, change);
    if (view.sphereId === this.activeId) this.renderPost(view, post);
  }

  onPresence({ sphere_id: sphereId, user_id: userId, online }) {
    const view = this.views.get(sphereId);
    if (!view) return;
    if (online) view.online.add(userId);
    else view.online.delete(userId);
    if (!this.names.has(userId)) this.loadMembers(view);
    if (sphereId === this.activeId) this.renderPeople(view);
  }

  onTyping(sphereId, userId) {
    const view = this.views.get(sphereId);
    if (!view) return;
    clearTimeout(view.typing.get(userId));
    view.typing.set(
      userId,
      setTimeout(() => this.clearTyping(view, userId), TYPING_SHOWN_MS),
    );
    if (sphereId === this.activeId) this.renderTyping(view);
  }

  clearTyping(view, userId) {
    if (!view.typing.has(userId)) return;
    clearTimeout(view.typing.get(userId));
    view.typing.delete(userId);
    if (view.sphereId === this.activeId) this.renderTyping(view);
  }

  // -- history --

  async loadOlder(view) {
    if (!view || view.loadingOlder || !view.hasOlder || view.historyBefore === null) return;
    const before = view.oldestLoaded ?? view.historyBefore;
    if (before <= 1) {
      view.hasOlder = false;
      view.loaded = true;
      this.renderTimelineStatus(view);
      return;
    }
    const generation = view.generation;
    view.loadingOlder = true;
    this.renderTimelineStatus(view);
    let page;
    try {
      page = await this.client.history(view.sphereId, { before, limit: HISTORY_PAGE_SIZE });
    } catch {
      page = null; // connection lost: the next scroll or subscription retries
    } finally {
      view.loadingOlder = false;
    }
    if (page && generation === view.generation) this.addHistory(view, page, before);
    this.renderTimelineStatus(view);
  }

  addHistory(view, { messages, hasMore }, before) {
    const first = !view.loaded;
    const keep = keepScrollFromBottom();
    for (const post of messages) this.addPost(view, post);
    view.oldestLoaded = messages.length ? messages[0].offset : before;
    view.hasOlder = hasMore && messages.length > 0;
    view.loaded = true;
    if (view.sphereId !== this.activeId) return;
    if (first) scrollToBottom();
    else keep();
    this.renderBadge(view);
    this.scheduleMarkRead();
    // A short page may not fill the screen, and then no scroll would ever ask for more.
    if (view.hasOlder && ui.timeline.scrollHeight <= ui.timeline.clientHeight + LOAD_OLDER_PX) {
      this.loadOlder(view);
    }
  }

  onScroll() {
    const view = this.active();
    if (!view) return;
    if (ui.timeline.scrollTop < LOAD_OLDER_PX) this.loadOlder(view);
    if (isNearBottom()) this.scheduleMarkRead();
  }

  // -- read markers and unread counts --

  scheduleMarkRead() {
    clearTimeout(this.markReadTimer);
    this.markReadTimer = setTimeout(() => this.markRead(), MARK_READ_DELAY_MS);
  }

  markRead() {
    const view = this.active();
    if (!view?.role || document.visibilityState !== "visible" || !isNearBottom()) return;
    const position = this.client.position(view.sphereId);
    if (!position || position.offset <= view.readOffset) return;
    view.readOffset = position.offset;
    if (view.readOffset >= view.serverOffset) view.serverUnread = 0;
    this.renderBadge(view);
    this.client.markRead(view.sphereId, position.offset).catch(() => {});
  }

  unread(view) {
    // The open sphere is being read: no badge, like any chat application.
    if (!view.role || view.sphereId === this.activeId) return 0;
    // The server counted posts up to `serverOffset`; count the ones delivered since here.
    let count = view.readOffset >= view.serverOffset ? 0 : view.serverUnread;
    const floor = Math.max(view.serverOffset, view.readOffset);
    for (const post of view.posts.values()) {
      const counted = post.kind === "post" && !post.deleted && post.author_id !== this.me?.user_id;
      if (post.offset > floor && counted) count++;
    }
    return count;
  }

  // -- writing --

  async send(typed) {
    const view = this.active();
    if (!view?.role || !typed.trim()) return;
    const body = withMentions(typed, view.members);
    if (new TextEncoder().encode(body).length > this.maxMessageBytes) {
      showComposerError(`Too long: at most ${this.maxMessageBytes} bytes.`);
      return;
    }
    showComposerError("");
    if (this.editing) {
      const { sphereId, offset } = this.editing;
      this.endEdit();
      await this.report(this.client.edit(sphereId, offset, body));
      return;
    }
    const messageId = newMessageId();
    const replyTo = this.replying?.sphereId === view.sphereId ? this.replying.offset : null;
    this.endReply();
    view.pending.set(messageId, { body: typed, error: "" });
    this.renderOutbox(view);
    scrollToBottom();
    try {
      if (replyTo) await this.client.reply(view.sphereId, replyTo, body, messageId);
      else await this.client.publish(view.sphereId, body, messageId);
    } catch (error) {
      const pending = view.pending.get(messageId);
      if (!pending) return;
      pending.error = explain(error);
      if (view.sphereId === this.activeId) this.renderOutbox(view);
    }
  }

  async report(promise) {
    try {
      await promise;
    } catch (error) {
      showComposerError(`Not done: ${error.message || error}`);
    }
  }

  startReply(view, post) {
    this.endEdit();
    this.replying = { sphereId: view.sphereId, offset: post.offset };
    const excerpt = plainBody(post.body ?? "", (id) => this.displayName(id));
    const author = this.displayName(post.author_id);
    ui.replyingText.textContent = `Replying to ${author}: ${excerpt.slice(0, 60)}`;
    ui.replying.hidden = false;
    this.renderComposer(view);
    ui.composerLabel.textContent = `Reply to ${this.displayName(post.author_id)}`;
    ui.composerInput.focus();
  }

  endReply() {
    if (!this.replying) return;
    this.replying = null;
    ui.replying.hidden = true;
    this.renderComposer(this.active());
  }

  startEdit(view, post) {
    this.endReply();
    this.editing = { sphereId: view.sphereId, offset: post.offset };
    ui.editing.hidden = false;
    ui.composerLabel.textContent = "Edit message";
    ui.composerInput.value = plainBody(post.body ?? "", (id) => this.displayName(id));
    autoGrow();
    ui.composerInput.focus();
  }

  endEdit() {
    if (!this.editing) return;
    this.editing = null;
    ui.editing.hidden = true;
    ui.composerInput.value = "";
    autoGrow();
    this.renderComposer(this.active());
  }

  askDelete(view, post) {
    this.deleting = { sphereId: view.sphereId, offset: post.offset };
    ui.confirmDelete.returnValue = "";
    ui.confirmDelete.showModal();
  }

  onDeleteConfirmed() {
    const target = this.deleting;
    this.deleting = null;
    if (!target || ui.confirmDelete.returnValue !== "delete") return;
    this.report(this.client.delete(target.sphereId, target.offset));
  }

  // -- rendering --

  renderSphereList() {
    const views = this.sortedViews();
    const focused = document.activeElement?.dataset?.sphereId;
    ui.noSpheres.hidden = views.length > 0;
    ui.sphereList.replaceChildren(
      ...views.map((view) =>
        sphereItem(view, { current: view.sphereId === this.activeId, unread: this.unread(view) }),
      ),
    );
    // Rebuilding drops keyboard focus; put it back on the same sphere.
    if (focused) this.sphereLink(focused)?.focus();
    this.renderTitle();
  }

  sphereLink(sphereId) {
    return ui.sphereList.querySelector(`[data-sphere-id="${CSS.escape(sphereId)}"]`);
  }

  renderBadge(view) {
    this.sphereLink(view.sphereId)
      ?.querySelector(".badge")
      ?.replaceWith(badge(this.unread(view)));
    this.renderTitle();
  }

  renderTitle() {
    const total = this.sortedViews().reduce((sum, v) => sum + this.unread(v), 0);
    const name = this.active()?.name;
    const base = name ? `${name} · Cloison` : "Cloison";
    document.title = total ? `(${total}) ${base}` : base;
  }

  renderActive() {
    const view = this.active();
    this.renderHeader(view);
    this.rendered = new Map();
    ui.messages.replaceChildren();
    const posts = view ? [...view.posts.values()].sort((a, b) => a.offset - b.offset) : [];
    for (const post of posts) {
      const item = this.postItem(view, post);
      this.rendered.set(post.offset, item);
      ui.messages.append(item);
    }
    this.renderOutbox(view);
    this.renderTimelineStatus(view);
    this.renderTyping(view);
    this.renderPeople(view);
    this.renderComposer(view);
    for (const link of ui.sphereList.querySelectorAll("a")) {
      if (link.dataset.sphereId === this.activeId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    for (const other of this.views.values()) this.renderBadge(other);
    scrollToBottom();
    this.scheduleMarkRead();
  }

  renderHeader(view) {
    let title = "Choose a sphere";
    if (view?.unavailable) title = "Unavailable sphere";
    else if (view) title = view.name || "Public sphere";
    ui.sphereTitle.textContent = title;
    this.renderTitle();
  }

  renderPost(view, post) {
    const item = this.postItem(view, post);
    const old = this.rendered.get(post.offset);
    this.rendered.set(post.offset, item);
    if (old) {
      old.replaceWith(item);
      return;
    }
    const follow = isNearBottom();
    insertInOrder(ui.messages, item, post.offset);
    if (follow) scrollToBottom();
  }

  postItem(view, post, { inPanel = false } = {}) {
    if (post.kind !== "post") return noticeItem(post, this.noticeText(post));
    const mine = post.author_id === this.me?.user_id;
    const writable = Boolean(view.role) && !post.deleted && !inPanel;
    const speaks = writable && !this.isMuted(view);
    const item = postItem(post, {
      authorName: this.displayName(post.author_id),
      mine,
      canEdit: speaks && mine,
      canDelete: writable && (mine || isStaff(view.role)),
      onEdit: () => this.startEdit(view, post),
      onDelete: () => this.askDelete(view, post),
      mentions: [(id) => this.displayName(id), this.me?.user_id],
    });
    const about = `message from ${this.displayName(post.author_id)} at ${timeOf(post.ts_ms)}`;
    if (post.reply_to) {
      const parent = view.posts.get(post.reply_to);
      const context = replyContext(parent, {
        displayName: (id) => this.displayName(id),
        onOpen: () => this.governance.openThread(view, post.reply_to),
      });
      item.prepend(context);
    }
    if (post.pinned) {
      const pinnedMark = el("span", { className: "msg-pinned" }, "pinned");
      item.querySelector(".msg-meta").append(" ", pinnedMark);
    }
    if (post.reactions?.length) {
      item.append(
        reactionBar(post, {
          me: this.me?.user_id,
          displayName: (id) => this.displayName(id),
          canReact: speaks,
          onToggle: (emoji, mine) => this.toggleReaction(view, post, emoji, mine),
        }),
      );
    }
    if (!writable) return item;
    let actions = item.querySelector(".msg-actions");
    if (!actions) {
      actions = el("div", { className: "msg-actions" });
      item.append(actions);
    }
    const extra = [];
    if (speaks) {
      extra.push(actionButton("Reply", `Reply to ${about}`, () => this.startReply(view, post)));
      const pick = (event) => this.pickReaction(view, post, event.currentTarget);
      extra.push(actionButton("React", `React to ${about}`, pick));
    }
    if (isPublisher(view.role)) {
      const text = post.pinned ? "Unpin" : "Pin";
      const pin = () => this.report(this.client.pin(view.sphereId, post.offset, !post.pinned));
      extra.push(actionButton(text, `${text} ${about}`, pin));
    }
    if (!mine) {
      const report = () => this.governance.openReport(view, post);
      extra.push(actionButton("Report", `Report ${about}`, report));
    }
    actions.prepend(...extra);
    return item;
  }

  /** A post as a panel (thread, pins) shows it: no actions, reactions as they are. */
  panelPost(view, post) {
    return this.postItem(view, post, { inPanel: true });
  }

  isMuted(view) {
    return Boolean(view?.mutedUntil && view.mutedUntil > Date.now());
  }

  pickReaction(view, post, opener) {
    const item = opener.closest("li");
    item.querySelector(".emoji-picker")?.remove();
    const close = () => {
      picker.remove();
      opener.focus();
    };
    const picker = emojiPicker({
      onPick: (emoji) => {
        close();
        const same = post.reactions?.find((r) => r.emoji === emoji);
        const mine = same?.user_ids.includes(this.me?.user_id);
        if (!mine) this.report(this.client.react(view.sphereId, post.offset, emoji));
      },
      onClose: close,
    });
    item.append(picker);
    picker.querySelector("button").focus();
  }

  toggleReaction(view, post, emoji, mine) {
    const { sphereId } = view;
    this.report(
      mine
        ? this.client.unreact(sphereId, post.offset, emoji)
        : this.client.react(sphereId, post.offset, emoji),
    );
  }

  showPeopleError(text) {
    ui.peopleError.textContent = text;
  }

  noticeText(event) {
    const who = this.displayName(event.author_id);
    if (event.kind === "sphere") return `${who} made this sphere ${event.privacy}`;
    if (event.kind === "pin") return `${who} pinned a message`;
    if (event.kind === "unpin") return `${who} unpinned a message`;
    const member = event.member_name ?? this.displayName(event.member_id);
    switch (event.action) {
      case "accepted":
        return `${member} accepted an invitation`;
      case "admitted":
        return `${who} admitted ${member}`;
      case "banned":
        return `${who} banned ${member}`;
      case "unbanned":
        return `${who} lifted the ban on ${member}`;
      case "muted":
        return `${who} muted ${member}${event.until_ms ? ` until ${timeOf(event.until_ms)}` : ""}`;
      case "unmuted":
        return `${who} unmuted ${member}`;
      case "joined":
        return event.role === "owner" ? `${member} created this sphere` : `${member} joined`;
      case "left":
        return `${member} left`;
      case "added":
        return `${who} added ${member}`;
      case "removed":
        return `${who} removed ${member}`;
      default:
        return `${who} made ${member} ${event.role}`;
    }
  }

  renderOutbox(view) {
    const items = [...(view?.pending ?? [])].map(([messageId, pending]) =>
      pendingItem(messageId, pending, () => view.pending.delete(messageId)),
    );
    ui.outbox.replaceChildren(...items);
  }

  renderTimelineStatus(view) {
    ui.charterPrompt.hidden = !view?.charterDue;
    ui.loadOlder.hidden = !view || !view.hasOlder || view.unavailable !== "" || !view.loaded;
    ui.timelineStatus.textContent = timelineStatus(view);
  }

  renderTyping(view) {
    const text = typingText(view ? [...view.typing.keys()].map((id) => this.displayName(id)) : []);
    // The region is aria-live: rewriting the same words would announce them again.
    if (ui.typing.textContent !== text) ui.typing.textContent = text;
  }

  renderPeople(view) {
    const online = view?.online ?? new Set();
    const known = new Map((view?.members ?? []).map((m) => [m.user_id, m.name]));
    for (const id of online) if (!known.has(id)) known.set(id, this.displayName(id));
    const people = [...known].sort(
      ([a, aName], [b, bName]) => online.has(b) - online.has(a) || aName.localeCompare(bName),
    );
    const members = new Map((view?.members ?? []).map((m) => [m.user_id, m]));
    ui.peopleError.textContent = "";
    ui.people.replaceChildren(
      ...people.map(([userId, name]) => {
        const member = members.get(userId);
        const controls = member ? this.governance.memberControls(view, member) : null;
        return personItem(userId, name, online.has(userId), member, controls);
      }),
    );
    const count = people.filter(([userId]) => online.has(userId)).length;
    ui.togglePeople.textContent = `People (${count} online)`;
  }

  renderComposer(view) {
    const muted = this.isMuted(view);
    // In a restricted sphere only staff and publishers post; members still reply.
    const announces = view?.privacy === "restricted" && !isPublisher(view?.role) && !this.replying;
    const blocked = muted || announces || Boolean(view?.charterDue);
    const enabled = Boolean(view?.role) && !view.unavailable && !blocked;
    ui.composerInput.disabled = !enabled;
    ui.send.disabled = !enabled;
    ui.sphereMenu.hidden = !view || Boolean(view.unavailable);
    if (this.editing || this.replying) return;
    ui.composerLabel.textContent = view ? `Message ${view.name || "this sphere"}` : "Message";
    let placeholder = "";
    if (enabled) placeholder = `Message ${view.name}`;
    else if (muted) placeholder = `You are muted until ${timeOf(view.mutedUntil)}`;
    else if (view?.charterDue) placeholder = "Accept the charter to take part";
    else if (announces && view.role) placeholder = "Only publishers post here; reply instead";
    else if (view && !view.unavailable) placeholder = "Only members can write here";
    ui.composerInput.placeholder = placeholder;
  }
}

// -- composer ----------------------------------------------------------------------------

function bindComposer(chat) {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = ui.composerInput.value;
    if (!body.trim()) return;
    if (!chat.editing) {
      ui.composerInput.value = "";
      autoGrow();
    }
    chat.send(body);
  });
  ui.composerInput.addEventListener("keydown", (event) => {
    // isComposing: Enter also confirms an IME composition (Japanese, Chinese...); not a send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    } else if (event.key === "Escape" && (chat.editing || chat.replying)) {
      event.preventDefault();
      chat.endEdit();
      chat.endReply();
    }
  });
  ui.composerInput.addEventListener("input", () => {
    autoGrow();
    const view = chat.active();
    if (view?.role && ui.composerInput.value && !chat.editing) chat.client.typing(view.sphereId);
  });
  ui.cancelEdit.addEventListener("click", () => {
    chat.endEdit();
    ui.composerInput.focus();
  });
}

function autoGrow() {
  const input = ui.composerInput;
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

function showComposerError(text) {
  if (!ui.composerError) {
    ui.composerError = el("p", { className: "form-error", role: "alert" });
    ui.composer.append(ui.composerError);
  }
  ui.composerError.textContent = text;
}

// -- drawers (narrow screens) ----------------------------------------------------------------

const drawers = [
  { toggle: ui.toggleSpheres, panel: ui.spheres },
  { toggle: ui.togglePeople, panel: ui.peoplePanel },
];

function bindDrawers() {
  for (const drawer of drawers) {
    drawer.toggle.addEventListener("click", () => {
      const open = drawer.toggle.getAttribute("aria-expanded") !== "true";
      closeDrawers();
      if (open) openDrawer(drawer);
    });
  }
  ui.scrim.addEventListener("click", () => closeDrawers());
  for (const drawer of drawers) {
    drawer.panel.querySelector(".drawer-close").addEventListener("click", () => {
      closeDrawers();
      drawer.toggle.focus();
    });
  }
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const open = drawers.find((d) => d.toggle.getAttribute("aria-expanded") === "true");
    if (!open) return;
    closeDrawers();
    open.toggle.focus();
  });
}

function openDrawer(drawer) {
  drawer.toggle.setAttribute("aria-expanded", "true");
  drawer.panel.classList.add("open");
  ui.scrim.hidden = false;
  // Start where the reader is: the open sphere, else the first thing in the drawer.
  const target = drawer.panel.querySelector("[aria-current]") ?? drawer.panel.querySelector("a");
  (target ?? drawer.panel.querySelector("button")).focus();
}

/** Close any open drawer; returns whether one was open. */
function closeDrawers() {
  let wasOpen = false;
  for (const drawer of drawers) {
    wasOpen ||= drawer.panel.classList.contains("open");
    drawer.toggle.setAttribute("aria-expanded", "false");
    drawer.panel.classList.remove("open");
  }
  ui.scrim.hidden = true;
  return wasOpen;
}

// -- small DOM helpers -----------------------------------------------------------------------

/** Insert `item` among `list`'s children ordered by their `data-offset`. */
function insertInOrder(list, item, offset) {
  const items = list.children;
  let low = 0;
  let high = items.length;
  // Live messages append, so check the end first; otherwise binary search.
  if (high === 0 || Number(items[high - 1].dataset.offset) < offset) {
    list.append(item);
    return;
  }
  while (low < high) {
    const mid = (low + high) >> 1;
    if (Number(items[mid].dataset.offset) < offset) low = mid + 1;
    else high = mid;
  }
  list.insertBefore(item, items[low] ?? null);
}

function isNearBottom() {
  const t = ui.timeline;
  return t.scrollHeight - t.scrollTop - t.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  ui.timeline.scrollTop = ui.timeline.scrollHeight;
}

/** Remember the distance from the bottom; the returned function restores it after a prepend. */
function keepScrollFromBottom() {
  const fromBottom = ui.timeline.scrollHeight - ui.timeline.scrollTop;
  return () => {
    ui.timeline.scrollTop = ui.timeline.scrollHeight - fromBottom;
  };
}

function announce(text) {
  const line = el("p");
  line.textContent = text;
  ui.announcer.append(line);
  while (ui.announcer.children.length > ANNOUNCEMENTS_KEPT) ui.announcer.firstChild.remove();
}

boot();
