"""``stempel-hub serve`` (the web app) and ``stempel-hub user add`` (owner logins)."""

from __future__ import annotations

import sys

import click

from cloud.cli.context import HubContext, pass_hub, run


@click.command()
@click.option("--host", help="Address to listen on. [[web] host, else 127.0.0.1]")
@click.option("--port", type=int, help="Port. [[web] port, else 8080]")
@click.option("--workers", type=int, help="Worker processes. [[web] workers, else 2]")
@click.option("--insecure-cookies", is_flag=True, default=False,
              help="Send the session cookie over plain HTTP (testing on localhost only).")
@pass_hub
def serve(ctx: HubContext, host, port, workers, insecure_cookies) -> None:
    """Serve the join pages, member cards, owner dashboard and API (gunicorn)."""
    from cloud.web.serve import serve as run_server

    hub = ctx.open(database=False, web__host=host, web__port=port, web__workers=workers,
                   web__secure_cookies=False if insecure_cookies else None)
    click.echo(f"stempel-hub web on http://{hub.config.web.host}:{hub.config.web.port}/ "
               f"({hub.config.web.workers} workers); owner pages at /owner/", err=True)
    run(lambda: run_server(hub.config))


@click.group()
def user() -> None:
    """Owner and staff logins of the web pages."""


@user.command("add")
@click.option("--merchant", required=True)
@click.option("--login", required=True, help="The sign-in name, e.g. an e-mail address.")
@click.option("--role", type=click.Choice(["owner", "staff"]), default="owner", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@pass_hub
def user_add(ctx: HubContext, merchant, login, role, password_stdin) -> None:
    """Create a login; the password is asked for (or read from stdin), never a flag."""
    from cloud.accounts import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    hub = ctx.open()
    account = run(lambda: add_user(hub.engine, merchant, login, role, password))
    click.echo(f"{account.role} {account.login} can now sign in to {merchant}'s pages at /owner/")


COMMANDS = [serve, user]
