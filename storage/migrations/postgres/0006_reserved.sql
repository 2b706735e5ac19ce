-- Reserved for the migration of invitations, join requests and bans.
SELECT 1;
