/**
 * drawers.js: the sphere list and people panel as drawers on narrow screens (toggle, scrim,
 * Escape, focus).
 */

import { ui } from "./page.js";

const drawers = [
  { toggle: ui.toggleSpheres, panel: ui.spheres },
  { toggle: ui.togglePeople, panel: ui.peoplePanel },
];

export function bindDrawers() {
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
export function closeDrawers() {
  let wasOpen = false;
  for (const drawer of drawers) {
    wasOpen ||= drawer.panel.classList.contains("open");
    drawer.toggle.setAttribute("aria-expanded", "false");
    drawer.panel.classList.remove("open");
  }
  ui.scrim.hidden = true;
  return wasOpen;
}
