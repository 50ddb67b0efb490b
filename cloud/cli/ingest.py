"""``stempel-hub ingest``: one ingest worker (cloud/link/events.py) until SIGTERM or Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli.context import HubContext, given, pass_hub, run
from cloud.config import IngestSection


@click.command()
@click.option("--mqtt-config", type=click.Path(dir_okay=False, path_type=Path),
              help="hub-mqtt.toml from `stempel-hub broker-config`: broker, ingest group, accounts.")
@click.option("--worker", default=1, show_default=True, help="With --mqtt-config: use account stempel-hub-N.")
@click.option("--host", help="Broker host. [127.0.0.1]")
@click.option("--port", type=int, help="Broker port. [1883]")
@click.option("--username", help="Broker account of this worker.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA (PEM) of a TLS listener.")
@click.option("--cert-file", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate (PEM).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help="Client key (PEM).")
@click.option("--worker-id", help="MQTT client id; keep it stable per worker. [the username, else stempel-ingest-1]")
@click.option("--group", help="Shared subscription group. [stempel-ingest]")
@click.option("--session-expiry", default=IngestSection.model_fields["session_expiry"].default, show_default=True,
              help="Seconds the broker keeps an absent worker's unacknowledged messages.")
@click.option("--max-event-ahead", "ahead_minutes", type=click.IntRange(0, 24 * 60), show_default=True,
              default=IngestSection.model_fields["max_event_ahead_minutes"].default,
              help="Refuse events dated more minutes ahead of the hub.")
@click.option("--max-event-age", "age_days", type=click.IntRange(1, 36500), show_default=True,
              default=IngestSection.model_fields["max_event_age_days"].default,
              help="Refuse events dated more days before the hub's clock.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--crash-after-commits", type=int, hidden=True, envvar="STEMPEL_TEST_CRASH_AFTER_COMMITS")
@pass_hub
def ingest(ctx: HubContext, mqtt_config, worker, host, port, username, password_file, ca_file, cert_file, key_file,
           worker_id, group, session_expiry, ahead_minutes, age_days, verbose, crash_after_commits) -> None:
    """Store kiosk events from MQTT (shared subscription; run several for more throughput).

    Under systemd (``Type=notify``): ``READY=1`` once connected, a ``STATUS=`` line, and watchdog
    pings while no message is stuck in the handler.
    """
    from cloud.link.events import serve
    from kiosk.common import logs
    from kiosk.common.sdnotify import Notifier, trace_watchdog_kills

    logs.setup(verbose)
    hub = ctx.open(mqtt__settings_file=mqtt_config, mqtt__host=host, mqtt__port=port, mqtt__username=username,
                   mqtt__password_file=password_file, mqtt__ca_file=ca_file, mqtt__cert_file=cert_file,
                   mqtt__key_file=key_file, mqtt__ingest_group=group,
                   ingest__session_expiry=given("session_expiry", session_expiry),
                   ingest__max_event_ahead_minutes=given("ahead_minutes", ahead_minutes),
                   ingest__max_event_age_days=given("age_days", age_days))
    worker_id = run(lambda: hub.broker.worker_id(worker, worker_id))
    settings = run(lambda: hub.bus(worker, worker_id))
    click.echo(f"ingest worker {worker_id} on {settings.host}:{settings.port}, database {hub.engine.url!r}; "
               "Ctrl-C stops", err=True)
    serve(hub.events(), settings, worker_id=worker_id, group=hub.broker.group,
          crash_after_commits=crash_after_commits, notifier=trace_watchdog_kills(Notifier.from_environ()))


COMMANDS = [ingest]
