"""Sessions: who is connected with which token, and ending them on every node.

- ``registry``: ``SessionRegistry``, this node's live sessions by token and by user; it closes
  them (4500) on revocation, expiry and disabling, and caps connections per user (4003);
- ``watcher``: ``SessionWatcher``, polls the store's ``session_changes`` log and hands each
  change to the registry, so a revocation made anywhere (another node, the command line)
  reaches this node's sockets;
- ``accounts``: ``Accounts``, the one code path for issuing, listing and revoking tokens,
  disabling users and renaming them, with the rules on who may issue what and the audit log;
  the HTTP API and the ``cloison`` command both call it;
- ``routes``: the account and administration HTTP routes over ``Accounts``;
- ``route_table``: ``AccountRoute``, the shape of those routes' table (and of the other
  account-style tables: deletion, holds), and ``RouteShell``, which serves one.
"""
