"""The portal of the service: card login (a challenge signed on the enterprise's card through the
local signing agent, or TLS client authentication) and the facts a login establishes, which the
portal's pages and the OpenID Connect provider (:mod:`unica.sso`) hand on."""
