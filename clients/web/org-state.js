/**
 * org-state.js: the organisations the user belongs to, the one the page is working in (the
 * switcher, shown when there are several), and what that organisation's policies tell the
 * page: whether its directory is shown, which sphere types a member may create.
 *
 * The server decides every right; this only chooses which buttons to show. A server without
 * organisations answers `list_orgs` with an error: the organisation bar then stays hidden.
 */

import { el } from "./dom.js";
import { ui } from "./page.js";

// The organisation chosen in this tab, kept across a reload like the token (an id, no secret).
const CURRENT_KEY = "cloison.org";

/** The user's organisations and the current one. */
export class OrgState {
  constructor(client) {
    this.client = client;
    this.orgs = []; // [{org_id, name, role, suspended}], by name
    this.current = null;
    this.policies = {}; // the current organisation's, as far as the caller may see them
  }

  bind() {
    ui.orgSwitch.addEventListener("change", () => this.choose(ui.orgSwitch.value));
  }

  get currentId() {
    return this.current?.org_id ?? null;
  }

  get isManager() {
    return this.current?.role === "manager";
  }

  /** Members see the directory unless the policy turns it off; managers always do. */
  get directoryShown() {
    return Boolean(this.current) && (this.isManager || this.policies.directory !== false);
  }

  /** List the organisations again, and the current one's policies. */
  async load() {
    let reply;
    try {
      reply = await this.client.listOrgs();
    } catch {
      return; // offline, or a server without organisations: nothing to show
    }
    this.orgs = [...reply.orgs].sort(
      (a, b) => a.name.localeCompare(b.name) || a.org_id.localeCompare(b.org_id),
    );
    const wanted = this.currentId ?? sessionStorage.getItem(CURRENT_KEY);
    this.current = this.orgs.find((o) => o.org_id === wanted) ?? this.orgs[0] ?? null;
    await this.loadPolicies();
  }

  async choose(orgId) {
    const org = this.orgs.find((o) => o.org_id === orgId);
    if (!org || org.org_id === this.currentId) return;
    this.current = org;
    sessionStorage.setItem(CURRENT_KEY, org.org_id);
    this.policies = {};
    await this.loadPolicies();
  }

  async loadPolicies() {
    if (this.current) {
      try {
        const info = await this.client.getOrg(this.current.org_id);
        this.apply(info);
      } catch {
        this.policies = {}; // not answered now; the defaults show the usual buttons
      }
    }
    this.render();
  }

  /** Take an `org_info` reply (from `get_org` or `update_org`) as the current state. */
  apply(info) {
    const org = this.orgs.find((o) => o.org_id === info.org.org_id);
    if (org) Object.assign(org, info.org);
    if (info.org.org_id === this.currentId) this.policies = info.policies ?? {};
    this.render();
  }

  /** The sphere types the user may create here, from `types` ([value, text] pairs). */
  creatableTypes(types) {
    const allowed = this.policies.member_sphere_types;
    const global = ["global", "Global: every member of the organisation, always"];
    if (this.isManager) return [...types, global];
    if (!Array.isArray(allowed)) return types;
    return types.filter(([value]) => allowed.includes(value));
  }

  render() {
    ui.orgBar.hidden = !this.current;
    if (!this.current) return;
    const several = this.orgs.length > 1;
    ui.orgSwitch.hidden = !several;
    ui.orgName.hidden = several;
    ui.orgName.textContent = this.current.name;
    ui.orgSwitch.replaceChildren(
      ...this.orgs.map((o) => el("option", { value: o.org_id }, o.name)),
    );
    ui.orgSwitch.value = this.current.org_id;
  }
}
