"""``unica agent``: the local signing agent for card login (runs on the enterprise's PC)."""

from __future__ import annotations

import click

from unica.cli.common import key_secrets, passphrase_file_option, pin_file_option

#: the only address the agent listens on
AGENT_HOST = "127.0.0.1"


@click.command("agent")
@click.option("--key", "key_uri", required=True, metavar="URI",
              help="The card's key (pkcs11:token=...;object=...; a file:PATH key for trials).")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False), default=None,
              help="The card's certificate, PEM or DER (default: the key's certificate on the token).")
@click.option("--allow-origin", "origins", multiple=True, required=True, metavar="URL",
              help="A portal origin whose pages may use the card, e.g. https://portal.example.cn "
                   "(repeatable; required).")
@click.option("--host", default=AGENT_HOST, show_default=True,
              help="Address to listen on: 127.0.0.1 only (the agent serves this PC's browser).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port.")
@pin_file_option
@passphrase_file_option
def agent(key_uri, cert_file, origins, host, port, pin_file, passphrase_file) -> None:
    """Serve the card to the portal's login page on this PC: sign unica login challenges only,
    only for the allowed origins, until stopped. The PIN is asked here, once, never by the page.

    \b
    Examples:
      unica agent --key 'pkcs11:token=zhangsan;object=login' --allow-origin https://portal.example.cn
      unica agent --key 'pkcs11:token=zhangsan;object=login' --cert zhangsan.pem --port 0 \\
          --allow-origin https://portal.example.cn --allow-origin https://127.0.0.1:8443
    """
    from unica.agent.app import AgentApp, run, stderr_line
    from unica.agent.card import open_card
    from unica.portal.challenge import check_origin
    from unica.serving import bind

    if host != AGENT_HOST:
        raise click.BadParameter(f"the agent listens on {AGENT_HOST} only (a card must not be reachable from "
                                 f"the network), not {host!r}", param_hint="'--host'")
    for origin in origins:
        check_origin(origin, "--allow-origin")
    card = open_card(key_uri, cert_file=cert_file, **key_secrets(key_uri, pin_file, passphrase_file))
    sock = bind(AGENT_HOST, port)
    port = sock.getsockname()[1]
    app = AgentApp(card, origins, port)
    click.echo(f"unica agent on http://{AGENT_HOST}:{port}/")
    stderr_line(f"card {card.subject} (certificate {format(card.cert.serial_number, 'x')}, {card.algorithm}); "
                f"origins allowed: {', '.join(sorted(app.origins))}")
    run(app, sock)


COMMANDS = [agent]
