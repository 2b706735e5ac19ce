/**
 * chat-timeline.js: a sphere's stream as the chat sees it: subscribed/reset events, posts,
 * edits, membership and settings events, presence and typing, older history, read markers,
 * and the composer's actions (send, reply, edit, delete). `Chat` extends this layer.
 */

import { newMessageId } from "./cloison.js";
import { applyPin, applyReaction, plainBody, withMentions } from "./conversations.js";
import { explain } from "./panel.js";
import { applyChangeTo } from "./views.js";
import { announce, isNearBottom, keepScrollFromBottom, scrollToBottom, ui } from "./page.js";
import { autoGrow, showComposerError } from "./composer.js";
import { ChatRendering } from "./chat-render.js";

// Posts per history request: a screenful or two on a desktop.
const HISTORY_PAGE_SIZE = 50;
// The protocol has no "stopped typing" notice; hide the indicator this long after the last.
const TYPING_SHOWN_MS = 5_000;
// Coalesce read-marker updates while messages stream in.
const MARK_READ_DELAY_MS = 500;
// Start loading older messages this close to the top, before the reader hits it.
const LOAD_OLDER_PX = 200;

/** The stream and composer-action layer of `Chat`, over its rendering. */
export class ChatTimeline extends ChatRendering {
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
    if (event.action === "deleted") this.forgetAuthor(view, userId, event.deleted);
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

  /**
   * A deleted account (docs/protocol.md, section 24): its events here lose their author, and
   * its posts their text when the server erases them (the event's ``deleted``).
   */
  forgetAuthor(view, userId, erased) {
    for (const post of view.posts.values()) {
      if (post.author_id !== userId) continue;
      delete post.author_id;
      if (erased && post.kind === "post") {
        post.deleted = true;
        delete post.body;
      }
    }
    if (view.sphereId === this.activeId) this.renderActive();
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
}
