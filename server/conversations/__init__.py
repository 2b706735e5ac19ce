"""Conversations: replies and threads, reactions, pins and mentions.

- ``writes``: react, unreact, pin and unpin, checked and drafted before they are committed
  (replies are posts: ``server.operations.messages``);
- ``reads``: the pinned posts, a thread, a sphere's threads, the caller's mentions;
- ``direct``: private messages, ``open_direct`` (a conversation is a sphere of type ``direct``).

The rights are rows of the operation table; the store checks, when the event is sequenced,
that the post it names is live and that its author may read it (``storage.sql.plan``).
"""

from server.conversations.reads import ConversationReads
from server.conversations.writes import ConversationWrites

__all__ = ["ConversationReads", "ConversationWrites"]
