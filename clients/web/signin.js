/**
 * signin.js: the sign-in form and the token's life in sessionStorage. The chat itself is
 * started by app.js through the callback given to `bootSignIn`.
 */

import { ui } from "./page.js";

const TOKEN_KEY = "cloison.token";
// Carries a sign-in error across the reload that resets the page after a refused token.
const SIGNIN_ERROR_KEY = "cloison.signin-error";

// Set by bootSignIn: opens the chat with a token.
let startChat = null;

/** Show the sign-in form, or go straight to the chat with the tab's saved token. */
export function bootSignIn(start) {
  startChat = start;
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
export function signOut(error = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  if (error) sessionStorage.setItem(SIGNIN_ERROR_KEY, error);
  location.reload();
}
