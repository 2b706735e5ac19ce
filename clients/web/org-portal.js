/**
 * org-portal.js: an organisation's internal portal (its listed spheres: open one, join a free
 * one, ask to join one on approval, withdraw a pending request), its member directory with a
 * name search, and for managers the "Manage" action that makes them a sphere's administrator,
 * visibly, after saying so.
 *
 * Every organisation page opens in the panel dialog with the same row of pages on top
 * (`orgNav`); the managers' pages are in org-manager.js and org-policies.js.
 */

import { actionButton, el } from "./dom.js";
import { isStaff } from "./roles.js";
import { alertLine, field, formOf } from "./panel.js";
import { SphereSettings } from "./sphere-settings.js";

// Members per directory page: enough to scan, small enough for an organisation of thousands.
const DIRECTORY_PAGE = 50;
// Wait this long after the last keystroke before searching the directory.
const SEARCH_DELAY_MS = 250;

const TYPE_NAMES = {
  private: "private",
  open: "open",
  public: "public",
  restricted: "restricted",
  global: "global: every member",
  direct: "private messages",
};
const POLICY_NAMES = { free: "free to join", approval: "on approval", invitation: "by invitation" };

/** The organisation portal and directory layer of `Governance`. */
export class OrgPortal extends SphereSettings {
  get orgs() {
    return this.chat.orgs;
  }

  /** The row of organisation pages, `current` marked; the managers' pages for managers. */
  orgNav(current) {
    const pages = [["portal", "Spheres", () => this.openPortal()]];
    if (this.orgs.directoryShown) {
      pages.push(["directory", "Directory", () => this.openDirectory()]);
    }
    if (this.orgs.isManager) {
      pages.push(
        ["members", "Members", () => this.openOrgMembers()],
        ["policies", "Policies", () => this.openPolicies()],
        ["audit", "Audit log", () => this.openOrgAudit()],
      );
    }
    const items = pages.map(([key, text, open]) => {
      const button = actionButton(text, "", open);
      if (key === current) button.setAttribute("aria-current", "page");
      return el("li", {}, button);
    });
    const nav = el("nav", { className: "org-nav" }, el("ul", {}, ...items));
    nav.setAttribute("aria-label", "Organisation pages");
    return nav;
  }

  /** Open an organisation page: the title names the organisation. */
  showOrg(page, title, ...content) {
    const org = this.orgs.current;
    this.show(`${org.name}: ${title}`, this.orgNav(page), ...content);
    // The page's own first control, not the row of pages, takes the focus.
    const first = this.panelBody.querySelector(":scope > :not(nav) :is(input, select, button)");
    first?.focus();
  }

  // -- the portal --------------------------------------------------------------------------

  async openPortal() {
    await this.orgs.load(); // a role or the directory policy may have changed meanwhile
    const org = this.orgs.current;
    if (!org) return;
    const status = alertLine();
    const list = el("ul", { className: "panel-list portal" });
    list.setAttribute("aria-label", "Spheres of the organisation");
    const intro = this.orgs.isManager
      ? "Every sphere of the organisation. You read one only as its visible member."
      : "The organisation's spheres you may enter or ask to join.";
    this.showOrg("portal", "spheres", el("p", { className: "hint" }, intro), status, list);
    const reply = await this.attempt(() => this.client.listOrgSpheres(org.org_id), status);
    if (!reply || this.orgs.currentId !== org.org_id) return;
    if (!reply.spheres.length) status.textContent = "No sphere to show yet.";
    for (const sphere of reply.spheres) list.append(this.portalItem(org, sphere, status));
  }

  portalItem(org, sphere, status) {
    const about = [TYPE_NAMES[sphere.privacy] ?? sphere.privacy];
    const policy = POLICY_NAMES[sphere.join_policy];
    if (!sphere.role && policy) about.push(policy);
    if (sphere.role) about.push(`you are ${sphere.role}`);
    const item = el(
      "li",
      {},
      el("span", { className: "panel-item-name" }, sphere.name),
      el("span", { className: "hint" }, about.join(", ")),
    );
    item.dataset.sphereId = sphere.sphere_id;
    const actions = el("span", { className: "portal-actions" });
    item.append(actions);
    this.renderPortalActions(org, sphere, actions, status);
    return item;
  }

  renderPortalActions(org, sphere, actions, status) {
    const name = sphere.name;
    const buttons = [];
    if (sphere.role) {
      buttons.push(actionButton("Open", `Open ${name}`, () => this.openSphere(sphere)));
    } else if (sphere.requested) {
      const withdraw = async () => {
        if (!(await this.attempt(() => this.client.withdrawRequest(sphere.sphere_id), status))) {
          return;
        }
        status.textContent = `Request to join ${name} withdrawn.`;
        this.renderPortalActions(org, { ...sphere, requested: false }, actions, status);
      };
      buttons.push(
        el("span", { className: "person-role" }, "request pending"),
        actionButton("Withdraw", `Withdraw the request to join ${name}`, withdraw),
      );
    } else if (sphere.join_policy === "approval") {
      buttons.push(...this.askToJoin(org, sphere, actions, status));
    } else if (sphere.join_policy === "free") {
      const join = () => this.portalJoin(sphere, status);
      buttons.push(actionButton("Join", `Join ${name}`, join));
    }
    if (!sphere.role && sphere.privacy === "public") {
      buttons.push(actionButton("Read", `Read ${name}`, () => this.openSphere(sphere)));
    }
    if (this.orgs.isManager && !isStaff(sphere.role) && sphere.privacy !== "direct") {
      buttons.push(actionButton("Manage", `Manage ${name}`, () => this.confirmManage(org, sphere)));
    }
    actions.replaceChildren(...buttons);
  }

  askToJoin(org, sphere, actions, status) {
    const note = el("input", { id: `portal-note-${sphere.sphere_id}`, maxLength: 500 });
    const ask = actionButton("Ask to join", `Ask to join ${sphere.name}`, async () => {
      const sent = await this.attempt(
        () => this.client.requestJoin(sphere.sphere_id, note.value.trim()),
        status,
      );
      if (!sent) return;
      status.textContent = `Request sent to the administrators of ${sphere.name}.`;
      this.renderPortalActions(org, { ...sphere, requested: true }, actions, status);
    });
    return [field(`Note to ${sphere.name} (optional)`, note), ask];
  }

  async portalJoin(sphere, status) {
    if (!(await this.attempt(() => this.client.join(sphere.sphere_id), status))) return;
    this.close();
    await this.chat.refreshSpheres();
    this.chat.navigate(sphere.sphere_id);
  }

  /** Becoming a sphere's administrator is seen by its members: say so, then do it. */
  confirmManage(org, sphere) {
    const status = alertLine();
    const form = formOf("Manage this sphere", status, async () => {
      const done = await this.attempt(
        () => this.client.manageSphere(org.org_id, sphere.sphere_id),
        status,
      );
      if (!done) return;
      this.close();
      await this.chat.refreshSpheres();
      this.chat.navigate(sphere.sphere_id);
    });
    const cancel = actionButton("Cancel", "", () => this.openPortal());
    form.querySelector(".dialog-actions").prepend(cancel);
    form.prepend(
      el(
        "p",
        {},
        `You become an administrator of ${sphere.name}. Its members will see it: the ` +
          "sphere shows that you were appointed as a manager of the organisation, and its " +
          "audit log keeps it.",
      ),
      el("p", {}, "From then on you read it as this visible member, like any administrator."),
    );
    this.show(`Manage ${sphere.name}?`, form);
  }

  // -- the directory -----------------------------------------------------------------------

  openDirectory() {
    if (!this.orgs.directoryShown) return;
    const pages = this.memberPages(this.orgs.current, (member) => this.directoryItem(member));
    this.showOrg("directory", "directory", ...pages.nodes);
  }

  directoryItem(member) {
    const item = el("li", {}, el("span", { className: "panel-item-name" }, member.name));
    if (member.role === "manager") item.append(el("span", { className: "person-role" }, "manager"));
    item.dataset.userId = member.user_id;
    return item;
  }

  /**
   * A searchable, paged list of the organisation's members: a name search box, the list
   * (each item built by `itemOf(member)`), "More members" while there are more.
   * Returns `{nodes, reload}`: the nodes to show, and a function that reads the list again
   * (it resolves once it is shown).
   */
  memberPages(org, itemOf) {
    const search = el("input", { id: "org-search", type: "search", maxLength: 100 });
    search.setAttribute("autocomplete", "off");
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    list.setAttribute("aria-label", "Members");
    const more = actionButton("More members", "", () => load(next));
    more.hidden = true;
    let next = null;
    let generation = 0;
    const load = async (after = null) => {
      const asked = ++generation;
      const query = search.value.trim() || undefined;
      const options = { query, after: after ?? undefined, limit: DIRECTORY_PAGE };
      const read = () => this.client.listOrgMembers(org.org_id, options);
      const page = await this.attempt(read, status);
      if (!page || asked !== generation) return; // a newer search answers instead
      if (!after) list.replaceChildren();
      for (const member of page.members) {
        this.chat.names.set(member.user_id, member.name);
        list.append(itemOf(member));
      }
      if (!list.childElementCount) {
        status.textContent = query ? "Nobody by that name." : "No member.";
      }
      next = page.next ?? null;
      more.hidden = !next;
    };
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => load(), SEARCH_DELAY_MS);
    });
    load();
    return { nodes: [field("Search by name", search), status, list, more], reload: () => load() };
  }
}
