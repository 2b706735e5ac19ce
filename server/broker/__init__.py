"""Fan-out between gateway processes.

- ``base``: the ``Broker`` and ``BrokerHandler`` protocols;
- ``memory``: ``MemoryBroker``, the single-process default;
- ``redis``: ``RedisBroker``, Redis pub/sub between gateway processes.
"""

from server.broker.base import Broker, BrokerHandler
from server.broker.memory import MemoryBroker

__all__ = ["Broker", "BrokerHandler", "MemoryBroker"]
