"""``stempel-hub automations``: the worker that sends the automated messages (cloud/automations/)."""

from __future__ import annotations

import signal
import threading

import click

from cloud.cli.context import HubContext, pass_hub, run


@click.group()
def automations() -> None:
    """Welcome, birthday and win-back messages to members who agreed to them."""


@automations.command("run")
@click.option("--once", is_flag=True, help="One sweep, then exit (for a timer or cron).")
@click.option("--worker-id", help="Name of this worker in the messages it claims. [host-pid]")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@pass_hub
def run_command(ctx: HubContext, once: bool, worker_id: str | None, verbose: int) -> None:
    """Plan the messages due and send them, every [automations] interval_seconds until SIGTERM.

    Safe to run on several machines at once: a message is a row committed before it is sent and
    claimed by one worker, and none is sent twice (cloud/automations/outbox.py).
    """
    from cloud.automations.mailer import SmtpChannel
    from cloud.automations.worker import Worker
    from cloud.web.secret import secret_key
    from kiosk.common import logs

    logs.setup(verbose)
    hub = ctx.open()
    settings = hub.config.automations
    channel = run(lambda: SmtpChannel.from_config(hub.config.smtp))
    worker = Worker(hub.engine, hub.keys, run(lambda: secret_key(hub.data_dir)), settings, channel,
                    hub.config.smtp.sender or "", worker_id=worker_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while True:
        done = run(worker.sweep)
        click.echo(f"automations: {_summary(done.done)}", err=True)
        if once or stop.wait(settings.interval_seconds):
            return


def _summary(done) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(done.items())) or "nothing due"


COMMANDS = [automations]
