"""The local signing agent (``unica agent``): a small HTTP server on 127.0.0.1, on the
enterprise's PC next to the card, that lets the portal's login page have a challenge signed by
the card's key. It signs only unica login challenges (:mod:`unica.portal.challenge`) that name
the requesting page's origin, and only for the origins it was told to serve.

:mod:`unica.agent.card` holds the card (its key and certificate); :mod:`unica.agent.app` is the
ASGI application. Nothing here touches the CA's database: the agent runs far from it.
"""
