"""The Cloison server: the composition root over ``protocol`` and ``storage``.

- ``app``: ``create_app(config)``; the lifespan owns store, broker, hub and tasks;
- ``runner``: uvicorn on a prepared listening socket; ``cli``: the ``cloison`` command;
- ``config``: every option, from defaults, ``CLOISON_*`` variables and flags;
- ``gateway``: the WebSocket endpoint (handshake, auth, frame loop, error mapping);
- ``http_api``: the JSON API, validated by the same frame rules;
- ``operations/``: the operation table and the dispatcher; what each request does;
- ``access/``: the rights table and the one check of it; ``governance/``: sphere governance;
- ``hub``: ordered local fan-out with gap repair and resume; ``connection``: bounded outbound
  queue and writer; ``broker/``: fan-out between processes;
- ``auth``: bearer tokens; ``origins``: the browser Origin check; ``ratelimit``: token buckets;
  ``tasks``: the task supervisor.
"""
