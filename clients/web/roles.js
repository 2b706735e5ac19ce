/**
 * roles.js: the sphere roles, highest first, and what each may do on the page (a guide only:
 * the server decides every right).
 */

export const ROLES = ["owner", "admin", "publisher", "member", "visitor"];
export const RANK = { owner: 5, admin: 4, publisher: 3, member: 2, visitor: 1 };

export const isStaff = (role) => role === "owner" || role === "admin";
export const isPublisher = (role) => isStaff(role) || role === "publisher";
