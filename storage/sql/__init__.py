"""The query layer both SQL backends share; ``storage.sqlite`` and ``storage.postgres`` keep
only their dialect: connections, transactions, threads or pool, locks, error translation.

- ``dialect``: ``Dialect``, the fragments in which the engines' SQL differs (``SQLITE``,
  ``POSTGRES``), and placeholder rendering (``?`` or ``$1``) from one source;
- ``queries``: every shared statement, written once, rendered per dialect (``queries()``);
- ``accounts``: ``SqlAccounts``, users, tokens, session changes and the audit log, and the
  hooks (``_reading``, ``_writing``, ``_query``) every shared class runs on;
- ``directory``: ``SqlDirectory``, spheres, members and membership changes, read markers,
  listings and their paging;
- ``log``: ``SqlStore``, the message log's reads (events after an offset, history pages, one
  event, heads) on top of the directory: the base class of both engines;
- ``plan``: group-commit planning, pure Python over the rows a group reads (offsets,
  idempotency, membership checks, the posts drafts name, mentions, reactions, pins, threads);
- ``conversations``: ``SqlConversations``, pins, threads, mentions, reactions and reports, and
  the statements a group commit runs for what its conversation events change;
- ``entry``: ``SqlEntry``, invitations, join requests and a user's standing in a sphere (role,
  mute, ban);
- ``moderation``: ``SqlModeration``, bans, mutes, transfers of ownership and the deletion of a
  sphere with all its rows;
- ``queue``: ``AppendQueue``, the bounded queue of appends and the group writer task, with the
  one backpressure rule of both engines;
- ``erasure``: what each engine does so that erased text leaves its files: SQLite's scrub
  (``Scrubber``: checkpoints after erasures, retried while readers hold the log), PostgreSQL's
  compaction (``compact_postgres``).
"""
