/**
 * page.js: the page's elements, looked up once by id, and the small DOM helpers the chat
 * modules share (ordered insertion, scrolling, screen-reader announcements).
 */

import { el } from "./dom.js";

// "At the bottom" tolerance, so a sub-pixel scroll position still follows new messages.
const NEAR_BOTTOM_PX = 48;
// Screen readers get the last few announcements; older ones are pruned.
const ANNOUNCEMENTS_KEPT = 5;

const $ = (id) => document.getElementById(id);

export const ui = {
  signin: $("signin"),
  signinForm: $("signin-form"),
  tokenInput: $("token-input"),
  signinError: $("signin-error"),
  passwordForm: $("password-form"),
  emailInput: $("email-input"),
  passwordInput: $("password-input"),
  ssoProviders: $("sso-providers"),
  chat: $("chat"),
  connection: $("connection"),
  connectionText: $("connection-text"),
  meName: $("me-name"),
  signout: $("signout"),
  skipLink: $("skip-link"),
  orgBar: $("org-bar"),
  orgSwitch: $("org-switch"),
  orgName: $("org-name"),
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

/** Insert `item` among `list`'s children ordered by their `data-offset`. */
export function insertInOrder(list, item, offset) {
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

export function isNearBottom() {
  const t = ui.timeline;
  return t.scrollHeight - t.scrollTop - t.clientHeight < NEAR_BOTTOM_PX;
}

export function scrollToBottom() {
  ui.timeline.scrollTop = ui.timeline.scrollHeight;
}

/** Remember the distance from the bottom; the returned function restores it after a prepend. */
export function keepScrollFromBottom() {
  const fromBottom = ui.timeline.scrollHeight - ui.timeline.scrollTop;
  return () => {
    ui.timeline.scrollTop = ui.timeline.scrollHeight - fromBottom;
  };
}

export function announce(text) {
  const line = el("p");
  line.textContent = text;
  ui.announcer.append(line);
  while (ui.announcer.children.length > ANNOUNCEMENTS_KEPT) ui.announcer.firstChild.remove();
}
