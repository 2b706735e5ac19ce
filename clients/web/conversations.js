/**
 * Conversations on the page: reactions and pins applied to the posts a sphere holds, the
 * small views they need (the reaction chips, the emoji picker, the "in reply to" line), and
 * mentions: a body names a member as `<@user_id>`, shown as "@name"; the composer turns an
 * "@name" of a known member into that form.
 *
 * A post from history already carries its reactions and pin state; the live `react`,
 * `unreact`, `pin` and `unpin` events that follow change the post they name. Reactions are
 * kept as sets of users (the first `MAX_REACTION_USERS` per emoji, beyond that only the count
 * grows), so an event the post already reflects changes nothing.
 */

import { el } from "./dom.js";

/** The picker's choices; any single emoji is accepted by the server. */
export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"];

/** Apply a `react`/`unreact` event to `post` (a copy held by the page). Returns true if changed. */
export function applyReaction(post, event) {
  const reactions = (post.reactions ?? []).map((r) => ({ ...r, user_ids: [...r.user_ids] }));
  let entry = reactions.find((r) => r.emoji === event.emoji);
  const who = event.author_id;
  if (event.kind === "react") {
    if (entry?.user_ids.includes(who)) return false;
    if (!entry) {
      entry = { emoji: event.emoji, count: 0, user_ids: [] };
      reactions.push(entry);
    }
    entry.count += 1;
    entry.user_ids.push(who);
  } else {
    if (!entry) return false;
    const known = entry.user_ids.includes(who);
    // A user not in the (capped) list may still have reacted: only then is the count trusted.
    if (!known && entry.count <= entry.user_ids.length) return false;
    entry.user_ids = entry.user_ids.filter((id) => id !== who);
    entry.count -= 1;
  }
  post.reactions = reactions.filter((r) => r.count > 0);
  return true;
}

/** Apply a `pin`/`unpin` event. */
export function applyPin(post, event) {
  post.pinned = event.kind === "pin";
}

/**
 * The reaction chips under a post: one toggle button per emoji with its count; the names of
 * who reacted in its title and accessible name.
 */
export function reactionBar(post, { me, displayName, canReact, onToggle }) {
  const bar = el("div", { className: "reactions" });
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "Reactions");
  for (const reaction of post.reactions ?? []) {
    const mine = reaction.user_ids.includes(me);
    const names = reaction.user_ids.map(displayName);
    const others = reaction.count - names.length;
    const who = others > 0 ? `${names.join(", ")} and ${others} more` : names.join(", ");
    const chip = el(
      "button",
      { type: "button", className: "reaction", disabled: !canReact },
      el("span", { "aria-hidden": "true" }, reaction.emoji),
      el("span", { className: "reaction-count" }, String(reaction.count)),
    );
    chip.dataset.emoji = reaction.emoji;
    chip.title = who;
    chip.setAttribute("aria-pressed", mine ? "true" : "false");
    chip.setAttribute("aria-label", `${reaction.emoji} ${reaction.count}: ${who}`);
    chip.addEventListener("click", () => onToggle(reaction.emoji, mine));
    bar.append(chip);
  }
  return bar;
}

/**
 * A small emoji picker: a group of buttons, arrow keys move between them, Escape closes it.
 * `onPick(emoji)` is called with the choice; `onClose()` when it goes away without one.
 */
export function emojiPicker({ onPick, onClose }) {
  const picker = el("div", { className: "emoji-picker" });
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "Pick a reaction");
  const buttons = EMOJI.map((emoji) => {
    const button = el("button", { type: "button", className: "emoji" }, emoji);
    button.setAttribute("aria-label", `React with ${emoji}`);
    button.addEventListener("click", () => onPick(emoji));
    return button;
  });
  picker.append(...buttons);
  picker.addEventListener("keydown", (event) => {
    const at = buttons.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      onClose();
    } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && at >= 0) {
      event.preventDefault();
      const step = event.key === "ArrowRight" ? 1 : buttons.length - 1;
      buttons[(at + step) % buttons.length].focus();
    }
  });
  return picker;
}

const MENTION = /<@([A-Za-z0-9_-]{1,64})>/g;
const TYPED_MENTION = /(^|\s)@([^\s@<>]{1,100})/g;

/** A body's nodes: text, with each `<@user_id>` as a highlighted "@name" (text only). */
export function bodyNodes(body, displayName, me) {
  const nodes = [];
  let last = 0;
  for (const match of body.matchAll(MENTION)) {
    nodes.push(body.slice(last, match.index));
    const mention = el("span", { className: "mention" }, `@${displayName(match[1])}`);
    if (match[1] === me) mention.classList.add("mention-me");
    nodes.push(mention);
    last = match.index + match[0].length;
  }
  nodes.push(body.slice(last));
  return nodes;
}

/** A body as plain text, mentions as "@name" (announcements, excerpts). */
export function plainBody(body, displayName) {
  return body.replace(MENTION, (_, userId) => `@${displayName(userId)}`);
}

/** What the user typed, with "@name" of a member in `members` written as `<@user_id>`. */
export function withMentions(text, members) {
  const byName = new Map(members.map((m) => [m.name.toLowerCase(), m.user_id]));
  return text.replace(TYPED_MENTION, (whole, space, name) => {
    const userId = byName.get(name.toLowerCase());
    return userId ? `${space}<@${userId}>` : whole;
  });
}

/** The line above a reply: "In reply to NAME: beginning of the post", a button to the thread. */
export function replyContext(parent, { displayName, onOpen }) {
  const body = parent?.deleted ? "message deleted" : plainBody(parent?.body ?? "", displayName);
  const excerpt = parent ? `${displayName(parent.author_id)}: ${body}` : "an earlier message";
  const text = excerpt.length > 80 ? `${excerpt.slice(0, 79)}…` : excerpt;
  const button = el("button", { type: "button", className: "link-button reply-context" });
  button.append(el("span", { "aria-hidden": "true" }, "↪ "), `In reply to ${text}`);
  button.addEventListener("click", onOpen);
  return button;
}
