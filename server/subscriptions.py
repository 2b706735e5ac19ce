"""Who follows what on this node: the channels and the subscriptions in them.

``Subscriptions`` keeps both indexes (sphere → channel → subscriptions, connection →
subscriptions), counts members in and out of ``server.online``, and gives up a sphere's broker
subscription when its last local subscriber leaves. The hub owns delivery; this owns the books.
"""

from __future__ import annotations

from protocol import ConnId, SphereId, Unsubscribed
from server.broker import Broker
from server.channel import SphereChannel, Subscription
from server.connection import Connection
from server.online import OnlineCounter
from server.tasks import TaskSupervisor


class Subscriptions:
    def __init__(
        self,
        channels: dict[SphereId, SphereChannel],
        online: OnlineCounter,
        tasks: TaskSupervisor,
        broker: Broker,
    ) -> None:
        self._channels = channels  # shared with the hub, which opens channels
        self._online = online
        self._tasks = tasks
        self._broker = broker
        self._by_conn: dict[ConnId, dict[SphereId, Subscription]] = {}

    def add(self, channel: SphereChannel, sub: Subscription) -> None:
        old = channel.subs.get(sub.conn.conn_id)
        if old is not None:
            old.active = False  # replaced: its replay, if any, stops
        channel.subs[sub.conn.conn_id] = sub
        self._by_conn.setdefault(sub.conn.conn_id, {})[sub.sphere_id] = sub
        if sub.role is not None:
            self._online.count_in(channel, sub.conn.user_id)

    def remove(self, channel: SphereChannel, sub: Subscription) -> None:
        sub.active = False
        conn_id = sub.conn.conn_id
        if channel.subs.get(conn_id) is sub:
            del channel.subs[conn_id]
            subs = self._by_conn.get(conn_id)
            if subs is not None:
                subs.pop(sub.sphere_id, None)
                if not subs:
                    del self._by_conn[conn_id]
        if sub.role is not None:
            self._online.count_out(channel, sub.conn.user_id)
        if not channel.subs:
            del self._channels[channel.sphere_id]
            self.release_later(channel.sphere_id)

    def release_later(self, sphere_id: SphereId) -> None:
        """Drop the broker subscription of a channel that is gone (unless one comes back)."""
        self._tasks.spawn(self._release(sphere_id), name="broker unsubscribe")

    async def _release(self, sphere_id: SphereId) -> None:
        # A subscriber may have come back since: then the new channel keeps the broker
        # subscription. Checked when the task runs, right before the broker call is made.
        if sphere_id not in self._channels:
            await self._broker.unsubscribe(sphere_id)

    def unsubscribe(self, conn: Connection, sphere_id: SphereId, *, reason: str | None) -> bool:
        """End a subscription; with a ``reason``, tell the client. False if there was none."""
        sub = self._by_conn.get(conn.conn_id, {}).get(sphere_id)
        channel = self._channels.get(sphere_id)
        if sub is None or channel is None:
            return False
        self.remove(channel, sub)
        if reason is not None:
            conn.send(Unsubscribed(sphere_id=sphere_id, reason=reason))
        return True

    def drop_connection(self, conn: Connection) -> None:
        for sphere_id in list(self._by_conn.get(conn.conn_id, {})):
            self.unsubscribe(conn, sphere_id, reason=None)

    def subscription(self, conn: Connection, sphere_id: SphereId) -> Subscription | None:
        return self._by_conn.get(conn.conn_id, {}).get(sphere_id)
