"""The OpenID Connect provider of issue #14: agency systems sign users in with the verified facts
of one card login (:class:`unica.portal.facts.LoginFacts`).

- :mod:`unica.sso.clients`: the agency systems registered as clients (exact redirect URIs, a
  hashed secret or none);
- :mod:`unica.sso.keys`: the ID-token signing keys (on a token or in an encrypted file), rotation;
- :mod:`unica.sso.signing`: joserfc's JWS with the signature made by a :mod:`unica.hsm` key;
- :mod:`unica.sso.tokens`: :func:`~unica.sso.tokens.mint_id_token`,
  :func:`~unica.sso.tokens.verify_id_token`;
- :mod:`unica.sso.discovery`: the JWKS and the discovery document.

Nothing is imported here: ``import unica.sso.tokens`` etc. (the CLI loads only what it runs).
"""
