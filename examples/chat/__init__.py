"""The loop chat server, as a small package: ``python examples/chat_server.py`` runs it.

Modules, one concern each:

* :mod:`chat.events`   -- what travels between clients, rendered once per event for every client;
* :mod:`chat.outbox`   -- the bounded per-client queue and the slow-client policy;
* :mod:`chat.limits`   -- input limits and the flood (rate) limiter;
* :mod:`chat.admission` -- who may connect: per-address limits, WebSocket slots, idle clients;
* :mod:`chat.rooms`    -- rooms, members, server statistics;
* :mod:`chat.session`  -- one user's commands, independent of TCP or WebSocket;
* :mod:`chat.bus`      -- how a message reaches a room: in-process, or Redis pub/sub;
* :mod:`chat.tcp`      -- the line protocol over TCP (for ``nc``);
* :mod:`chat.web`      -- the WSGI app: the page and its WebSocket;
* :mod:`chat.app`      -- both servers together, the command line, shutdown.
"""
