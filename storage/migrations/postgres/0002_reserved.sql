-- Reserved for migration 0002 of another line of work (membership), which replaces this file
-- when both are merged. It changes nothing.
SELECT 1;
