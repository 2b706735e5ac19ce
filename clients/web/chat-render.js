/**
 * chat-render.js: how the chat shows its state: sphere list, header, timeline posts, people,
 * typing, outbox and composer state. `Chat` (chat.js) inherits these methods through
 * `ChatTimeline`; they read the view models kept by the other layers.
 */

import { emojiPicker, reactionBar, replyContext } from "./conversations.js";
import { actionButton, el } from "./dom.js";
import { isPublisher, isStaff } from "./roles.js";
import {
  badge,
  noticeItem,
  pendingItem,
  personItem,
  postItem,
  sphereItem,
  timelineStatus,
  timeOf,
  typingText,
} from "./views.js";
import { insertInOrder, isNearBottom, scrollToBottom, ui } from "./page.js";

/** The rendering layer of `Chat`. */
export class ChatRendering {
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
      case "deleted":
        return `the account of ${member} was deleted`;
      case "appointed":
        return `${member} became an administrator, appointed as a manager of the organisation`;
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
