/**
 * governance-options.js: the choices a sphere's creation and settings forms offer.
 */

export const TYPES = [
  ["private", "Private: by invitation only, invisible to others"],
  ["open", "Open: listed; anyone may enter (at once or on approval)"],
  ["public", "Public: everyone reads; members post"],
  ["restricted", "Restricted: announcements; staff post, members react and reply"],
];
export const POLICIES = [
  ["free", "At once"],
  ["approval", "On approval by an administrator"],
  ["invitation", "By invitation only"],
];
export const HISTORY = [
  ["since_joining", "Only what is posted after they join"],
  ["full", "The whole history"],
];
