"""The hard caps on every option, the timeouts and pacing constants, and ``LoadError``."""

from __future__ import annotations

SCENARIOS = ("fanout", "saturate", "idle", "reconnect", "history")

# Hard caps: an option above its cap is refused, so a typo cannot run away.
MAX_CONNECTIONS = 100_000  # the stretch goal for one machine
MAX_RATE_PER_S = 200_000.0  # messages/s offered in total
MAX_SECONDS = 600.0  # one publishing phase, one idle hold or one history pass
MAX_DRAIN_S = 120.0
MAX_PHASES = 16  # fixed rates in one fan-out run
MAX_STEPS = 40  # saturation steps, bisections included
MAX_PROCESSES = 64
MAX_HISTORY_MESSAGES = 1_000_000
MAX_USERS = 20_000  # distinct users made through the admin API (one HTTP call or two each)
MAX_RUN_S = 4 * 3600.0

# Why: one handshake, auth and subscribe on loopback takes milliseconds; 10 s means a storm.
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
# Why: acks after the last publish of a phase normally follow within a group commit.
ACK_TIMEOUT_S = 10.0
# Why: a failed connect is retried a few times (listen backlog overflow during storms).
CONNECT_ATTEMPTS = 3
# Why: a subscriber the server closed (slow consumer) resumes, but a loop of closes is a bug.
MAX_RESUMES = 3
# Why: uvloop timers tick in 1 ms, so a shorter sleep busy-spins the loop and steals the CPU
# the generator needs; the publisher sends what is due in bursts instead.
MIN_SLEEP_S = 0.001
# Why: below this share of the asked rate, a step measures the generator, not the server.
OFFER_RATIO_MIN = 0.95
# Why: a generator this busy adds its own queueing delay; a step failing then is flagged.
GENERATOR_BUSY = 0.9
GENERATOR_BOUND = "generator-bound"
# Why: a little under the 28k ephemeral ports Linux gives each source address by default.
PORTS_PER_SOURCE_IP = 25_000
# Why: the server's option has no "off" (0 means its automatic cap); this is more sockets than
# any descriptor limit allows.
UNCAPPED_UNAUTHENTICATED = 1 << 30
# Why: the server closes a connection that sends nothing for idle_timeout_ms; ping at a third
# of it, and at least this often whatever the server announces.
KEEPALIVE_FRACTION = 1 / 3
KEEPALIVE_MAX_S = 30.0
PROGRESS_INTERVAL_S = 1.0
# Why: a history page is up to 1 MiB (MAX_SERVER_FRAME_BYTES); accept a little more.
MAX_INBOUND_BYTES = 2 * 1024 * 1024
# Why: fd headroom for the event loop, pipes and the admin HTTP calls.
FD_MARGIN = 128
HTTP_THREADS = 16


class LoadError(Exception):
    """The run cannot go on: the target refused, a worker failed, a bound was hit."""
