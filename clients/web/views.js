/**
 * The page's view builders: plain data in, DOM out. User content goes in only as text
 * (`textContent`, text nodes), never parsed as HTML.
 */

import { bodyNodes } from "./conversations.js";
import { actionButton, el } from "./dom.js";

// Address of an open sphere in the page's fragment: "#/s_Xw2b7KpL9mQz4rTe".
export const ROUTE_PREFIX = "#/";

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

export function sphereItem(view, { current, unread }) {
  const link = el("a", { href: ROUTE_PREFIX + encodeURIComponent(view.sphereId) });
  link.dataset.sphereId = view.sphereId;
  if (current) link.setAttribute("aria-current", "page");
  const isPrivate = view.privacy === "private";
  const mark = isPrivate ? lockIcon() : el("span", { className: "sphere-mark" }, "#");
  mark.setAttribute("aria-hidden", "true");
  const name = el("span", { className: "sphere-name" }, view.name);
  const privacy = el("span", { className: "visually-hidden" }, `, ${view.privacy}`);
  link.append(mark, name, privacy, badge(unread));
  return el("li", {}, link);
}

export function badge(count) {
  const item = el(
    "span",
    { className: "badge" },
    el("span", {}, count > 99 ? "99+" : String(count)),
    el("span", { className: "visually-hidden" }, " unread"),
  );
  item.dataset.unread = String(count);
  item.hidden = count === 0;
  return item;
}

export function noticeItem(event, text) {
  const item = el("li", { className: "msg notice" }, el("p", { className: "msg-body" }, text));
  item.dataset.offset = String(event.offset);
  item.append(el("p", { className: "msg-meta" }, timeElement(event.ts_ms)));
  return item;
}

export function postItem(post, options) {
  const { authorName, mine, canEdit, canDelete, onEdit, onDelete, mentions } = options;
  const item = el("li", { className: "msg" });
  item.dataset.offset = String(post.offset);
  item.dataset.messageId = post.message_id;
  item.classList.toggle("mine", mine);
  item.classList.toggle("deleted", Boolean(post.deleted));

  const author = el("span", { className: "msg-author" }, authorName);
  if (post.author_id) author.dataset.authorId = post.author_id;
  const meta = el("p", { className: "msg-meta" }, author, " ", timeElement(post.ts_ms));
  if (post.edited_ms && !post.deleted) {
    const edited = el("span", { className: "msg-edited" }, "(edited)");
    edited.title = `Edited ${fullFormat.format(new Date(post.edited_ms))}`;
    meta.append(" ", edited);
  }
  const text = post.deleted ? ["message deleted"] : bodyNodes(post.body ?? "", ...mentions);
  const body = el("p", { className: "msg-body" }, ...text);
  item.append(meta, body);

  const about = `message from ${authorName} at ${timeOf(post.ts_ms)}`;
  const actions = el("div", { className: "msg-actions" });
  if (canEdit) actions.append(actionButton("Edit", `Edit ${about}`, onEdit));
  if (canDelete) actions.append(actionButton("Delete", `Delete ${about}`, onDelete, "danger-text"));
  if (actions.childElementCount) item.append(actions);
  return item;
}

export function pendingItem(messageId, pending, onDismiss) {
  const item = el("li", { className: "msg mine pending" });
  item.dataset.messageId = messageId;
  const status = pending.error
    ? el("span", { className: "msg-failed" }, `Not sent: ${pending.error}`)
    : el("span", { className: "msg-sending" }, "Sending…");
  item.append(
    el("p", { className: "msg-meta" }, status),
    el("p", { className: "msg-body" }, pending.body),
  );
  if (pending.error) {
    const dismiss = actionButton("Dismiss", "Dismiss the unsent message", () => {
      onDismiss();
      item.remove();
    });
    item.append(el("div", { className: "msg-actions" }, dismiss));
  }
  return item;
}

export function personItem(userId, name, online, member, controls) {
  const item = el(
    "li",
    { className: online ? "person online" : "person" },
    el("span", { className: "presence-dot", "aria-hidden": "true" }),
    el("span", { className: "person-name" }, name),
    el("span", { className: "visually-hidden" }, online ? ", online" : ", offline"),
  );
  if (member?.role && member.role !== "member") {
    item.append(el("span", { className: "person-role" }, member.role));
  }
  if (member?.mutedUntil && member.mutedUntil > Date.now()) {
    item.append(el("span", { className: "person-role" }, "muted"));
  }
  item.dataset.userId = userId;
  if (controls) item.append(controls);
  return item;
}

export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return names.length > 2 ? "Several people are typing…" : "";
}

export function timelineStatus(view) {
  if (!view) return "";
  if (view.unavailable) return view.unavailable;
  if (view.loadingOlder) return "Loading messages…";
  if (!view.loaded || view.hasOlder) return "";
  return view.posts.size ? "This is the beginning of the sphere." : "No messages yet. Say hello!";
}

export function applyChangeTo(post, change) {
  if (change.kind === "delete") {
    post.deleted = true;
    delete post.body;
  } else if (change.kind === "edit" && !post.deleted && change.body !== undefined) {
    // A replayed or history post may already carry this edit: only a later one applies.
    if ((post.edited_ms ?? 0) <= change.ts_ms) {
      post.body = change.body;
      post.edited_ms = change.ts_ms;
    }
  }
}

export function lockIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "sphere-mark");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M4 7V5a4 4 0 0 1 8 0v2h1v8H3V7zm2 0h4V5a2 2 0 0 0-4 0z");
  svg.append(path);
  return svg;
}

export function timeElement(tsMs) {
  const date = new Date(tsMs);
  const time = el("time", { className: "msg-time" });
  time.dateTime = date.toISOString();
  time.title = fullFormat.format(date);
  time.textContent = timeOf(tsMs);
  return time;
}

export function timeOf(tsMs) {
  const date = new Date(tsMs);
  const sameDay = date.toDateString() === new Date().toDateString();
  return (sameDay ? timeFormat : dateTimeFormat).format(date);
}
