"""Slack stand-in for o2c-bot: a fake Slack Web API that records calls, plus a request driver.

Why it exists: end-to-end tests run the real bot against this stand-in (its ``WebClient`` points
at :attr:`StandInServer.api_url`) and drive it with requests signed exactly like Slack's, so
tests exercise the same HTTP surface production does. A browser sandbox page can later render
the state the stand-in holds (channels, DMs, ephemerals, modals, home tabs).

Public entry points:

* :mod:`sandbox.webapi` -- :class:`SlackWebAPI`, :class:`StandInServer`, :class:`Call`,
  :class:`Fault` (Web API handlers live in :mod:`sandbox.methods`, response_url and modal
  lifecycle rules in :mod:`sandbox.interactions`, the ``http.server`` front in
  :mod:`sandbox.server`)
* :mod:`sandbox.blockkit` -- :func:`validate_blocks`, :func:`validate_view`,
  :func:`validate_message` (pure functions, also re-exported by :mod:`sandbox.webapi`)
* :mod:`sandbox.driver` -- :class:`SlackDriver`, :func:`sign`; element lookup and payload
  values in :mod:`sandbox.elements`
"""
