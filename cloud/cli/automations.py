"""``stempel-hub automations``: the worker that sends the automated messages (cloud/automations/)."""

from __future__ import annotations

import signal
import threading

import click

from cloud.cli.context import HubContext, pass_hub, run


@click.group()
def automations() -> None:
    """Welcome, birthday, win-back and "almost there" messages to members who agreed to them."""


@automations.command("run")
@click.option("--once", is_flag=True, help="One sweep, then exit (for a timer or cron).")
@click.option("--worker-id", help="Name of this worker in the messages it claims. [host-pid]")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@pass_hub
def run_command(ctx: HubContext, once: bool, worker_id: str | None, verbose: int) -> None:
    """Plan the messages due and send them, every [automations] interval_seconds until SIGTERM.

    Safe to run on several machines at once: a message is a row committed before it is sent and
    claimed by one worker, and none is sent twice (cloud/automations/outbox.py). Under systemd
    (``Type=notify``): ``READY=1`` once the database answers, the last sweep's counts as the
    status line, watchdog pings from the loop (cloud/automations/worker.py ``serve``).
    """
    from cloud.automations.campaigns import CampaignStore
    from cloud.automations.mailer import SmtpChannel
    from cloud.automations.webhook import WebhookChannel
    from cloud.automations.worker import Worker, serve, summary
    from cloud.web.secret import secret_key
    from kiosk.common import logs
    from kiosk.common.sdnotify import Notifier, trace_watchdog_kills

    logs.setup(verbose)
    hub = ctx.open()
    settings = hub.config.automations
    channel = run(lambda: SmtpChannel.from_config(hub.config.smtp)) if "email" in settings.channels else None
    hook = run(lambda: WebhookChannel.from_config(hub.config.webhook)) if "webhook" in settings.channels else None
    worker = run(lambda: Worker(hub.engine, hub.keys, secret_key(hub.data_dir), settings, channel,
                                hub.config.smtp.sender or "", worker_id=worker_id, webhook=hook,
                                campaigns=CampaignStore(hub.engine, hub.data_dir)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with trace_watchdog_kills(Notifier.from_environ()) as notifier:
        run(lambda: serve(worker, stop, notifier, settings.interval_seconds, once=once,
                          report=lambda done: click.echo(f"automations: {summary(done.done)}", err=True)))


@automations.command("status")
@click.argument("merchant")
@click.option("--failures", "limit", default=20, show_default=True, help="How many failed messages to list.")
@pass_hub
def status_command(ctx: HubContext, merchant: str, limit: int) -> None:
    """Messages of MERCHANT per channel and status, and the newest failures with their reasons
    (a bounced e-mail's SMTP reply, a webhook's HTTP status)."""
    from cloud.automations import outbox

    hub = ctx.open()
    for (channel, status), n in sorted(outbox.channel_counts(hub.engine, merchant).items()):
        click.echo(f"{channel:8} {status:10} {n}")
    for f in outbox.failures(hub.engine, merchant, limit):
        click.echo(f"{f.created_at:%Y-%m-%d %H:%M} {f.channel} {f.trigger} {f.member_id} {f.status} "
                   f"after {f.attempts} attempt(s): {f.reason}")


COMMANDS = [automations]
