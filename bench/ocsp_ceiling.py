"""Baseline: a raw-ASGI responder that returns pre-signed bytes from a dict (the Python ceiling).

``make_app(responses)`` with ``{request DER: response DER}``; anything else gets
malformedRequest. Run by bench/ocsp_load.py under the same uvicorn settings as unica.
"""

MALFORMED = b"\x30\x03\x0a\x01\x01"
HEADERS = [(b"content-type", b"application/ocsp-response")]


def make_app(responses: dict):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        out = responses.get(body, MALFORMED)
        await send({"type": "http.response.start", "status": 200,
                    "headers": HEADERS + [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
    return app


class HandlerCeiling:
    """The same dict lookup on unica's own HTTP server (``handle`` instead of ASGI)."""

    max_body = 8192

    def __init__(self, responses: dict):
        self.responses = responses

    def handle(self, method, path, body):
        return 200, HEADERS, self.responses.get(body, MALFORMED)
