"""The scenarios of ``cloison loadtest``, one module each, and what they share.

- ``rig.py``: the ``Rig`` a scenario runs on, the fleet of subscribers, the fan-out topology,
  one publishing phase;
- ``fanout.py``, ``saturate.py``, ``idle.py``, ``reconnect.py``, ``history.py``: one scenario
  each, a coroutine taking the rig and returning a ``Report``.
"""
