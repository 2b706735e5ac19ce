/**
 * The Cloison web page's entry point: sign-in first, then the chat.
 *
 * Modules: signin.js (token, sign-in form), chat.js / chat-timeline.js / chat-render.js (the
 * chat: sphere list, timeline, composer actions, rendering), composer.js and drawers.js
 * (page controls), page.js (elements and DOM helpers); governance flows in governance.js and
 * its panels (organisations: org-state.js, the current organisation; org-portal.js,
 * org-manager.js, org-policies.js, its pages), reactions, replies and mentions in
 * conversations.js, DOM builders in views.js.
 *
 * All protocol work (reconnect, resume, dedupe, outbox) lives in cloison.js; the chat keeps
 * a view model per sphere and renders it. User content is only ever put in the page with
 * `textContent`, never parsed as HTML.
 */

import { CloisonClient } from "./cloison.js";
import { ui } from "./page.js";
import { bootSignIn } from "./signin.js";
import { Chat } from "./chat.js";

function startChat(token) {
  ui.signin.hidden = true;
  ui.chat.hidden = false;
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const chat = new Chat(new CloisonClient(url.href, token));
  chat.start();
}

bootSignIn(startChat);
