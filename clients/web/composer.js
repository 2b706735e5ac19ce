/**
 * composer.js: the message box's keyboard and form handling; sending, editing and replying
 * themselves are the chat's (chat-timeline.js).
 */

import { el } from "./dom.js";
import { ui } from "./page.js";

export function bindComposer(chat) {
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

export function autoGrow() {
  const input = ui.composerInput;
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

export function showComposerError(text) {
  if (!ui.composerError) {
    ui.composerError = el("p", { className: "form-error", role: "alert" });
    ui.composer.append(ui.composerError);
  }
  ui.composerError.textContent = text;
}
