"""``stempel-kiosk``: decode images, run images through the pipeline, run live, redeem."""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
from decimal import Decimal
from pathlib import Path

import click

from kiosk.app import NO_CODE, ScanResult
from kiosk.common import logs
from kiosk.common.errors import StempelError, UnreadableImage
from kiosk.config import KioskConfig, load_config
from kiosk.hardware.camera import Frame, load_image
from kiosk.hardware.decoder import DECODERS, open_decoder
from kiosk.rules.program import MAX_AMOUNT


class LazyGroup(click.Group):
    """A group whose *lazy* commands (name -> ``"module:attribute"``) are imported when one is
    asked for (run, or listed by ``--help``), as Click's documentation shows: the running kiosk
    never loads the updater, the installer's check, or Flask without a staff screen
    (bench/kiosk_footprint.py)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


_config_opt = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                           envvar="STEMPEL_CONFIG", help="kiosk.toml [/etc/stempel/kiosk.toml]")
_data_opt = click.option("--data-dir", type=click.Path(file_okay=False), help="Ledger and keys folder.")


@click.group(cls=LazyGroup, lazy={
    "check": "kiosk.check:check",  # the installer's final check
    "update": "kiosk.update:update",
    "staff": "kiosk.web.commands:staff",  # hash-pin | pos-token
})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Stempel kiosk: the countertop loyalty scanner."""
    logs.setup(verbose)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--decoder", "decoder_kind", default="auto", show_default=True, type=click.Choice(sorted(DECODERS)),
              help="auto: zxing-cpp, its retries, then pyzbar.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def decode(images: tuple[str, ...], decoder_kind: str, as_json: bool) -> None:
    """Print the QR texts found in each image."""
    decoder = _guard(lambda: open_decoder(decoder_kind))
    failed = False
    for image in images:
        try:
            texts = [t.decode("utf-8", "replace") for t in decoder.decode(load_image(image))]
            error = None
        except UnreadableImage as exc:
            texts, error, failed = [], str(exc), True
        if as_json:
            click.echo(json.dumps({"image": image, "codes": texts, "error": error}))
        elif error:
            click.echo(f"{image}: error: {error}", err=True)
        else:
            click.echo(f"{image}: " + (" | ".join(texts) if texts else "(no code)"))
    sys.exit(1 if failed else 0)


@main.command("scan-image")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@_config_opt
@_data_opt
@click.option("--display-out", type=click.Path(file_okay=False), help="Write the screen after each image as PNG here.")
@click.option("--amount", type=click.FloatRange(min=0, max=float(MAX_AMOUNT)), help="Purchase amount (points programmes).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image (the default output is text).")
def scan_image(images, config_path, data_dir, display_out, amount, as_json) -> None:
    """Run each image through decode → verify → rules → ledger → feedback."""
    config = _load(config_path, data_dir)
    from kiosk.wiring import build_kiosk

    kiosk = _guard(lambda: build_kiosk(config, live=False))
    out_dir = Path(display_out) if display_out else None
    if out_dir and not hasattr(kiosk.display, "image"):
        kiosk.close()
        click.echo("error: --display-out saves the simulated display's screens: run with STEMPEL_HARDWARE=sim",
                   err=True)
        sys.exit(2)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    kiosk.show_idle()
    for index, image in enumerate(images, 1):
        try:
            result = kiosk.handle_frame(Frame(load_image(image), source=image),
                                        amount=None if amount is None else Decimal(str(amount)))
        except UnreadableImage:
            result = ScanResult(image, NO_CODE, reason="unreadable_image")
        if out_dir:
            kiosk.display.image.save(out_dir / f"{index:03d}-{Path(image).stem}.png")
        _print(result, as_json)
        sys.stdout.flush()


@main.command()
@_config_opt
@_data_opt
@click.option("--simulate", is_flag=True, help="Simulated hardware (same as STEMPEL_HARDWARE=sim).")
@click.option("--replay", "replay_dir", type=click.Path(file_okay=False), help="Replay camera images from a folder.")
@click.option("--json", "as_json", is_flag=True)
def run(config_path, data_dir, simulate, replay_dir, as_json) -> None:
    """Run the live loop: camera, display, LED, buzzer and the staff button.

    Exits 0 after a clean stop (Ctrl-C, SIGTERM, a finished replay), 1 when the loop or a
    background thread failed (logged and put in ``state`` first, so systemd restarts a
    kiosk that would otherwise sit there half-working), 2 for a configuration error.

    Under systemd (``Type=notify``): ``READY=1`` once the camera gave its first answer, a
    ``STATUS=`` line for ``systemctl status``, and watchdog pings from the camera loop.
    """
    from kiosk.common.sdnotify import Notifier, trace_watchdog_kills
    from kiosk.link.state import StatusBoard, ThreadWatch
    from kiosk.loop import run as run_loop
    from kiosk.service import KioskService, status_line
    from kiosk.wiring import build_kiosk, open_documents, watch_offline

    overrides = {"hardware__backend": "sim" if simulate else None, "hardware__replay_dir": replay_dir}
    config = _load(config_path, data_dir, **overrides)
    documents = _guard(lambda: open_documents(config))  # loaded and verified once, for the kiosk and the link
    kiosk = _guard(lambda: build_kiosk(config, documents=documents))  # camera, decoder, panel, display: the factory
    stop = threading.Event()
    watch = ThreadWatch(StatusBoard(), stop).install()  # before the hub link starts its threads
    try:
        link = _guard(lambda: _start_link(config, kiosk.boot, documents))
    except SystemExit:
        watch.uninstall()
        kiosk.close()
        raise
    if link is not None:
        watch.report_to(link.status)
    offline = watch_offline(link) if link is not None else None  # the screens' "offline" mark
    kiosk.status = watch.status
    notifier = trace_watchdog_kills(Notifier.from_environ())
    service = KioskService(notifier, lambda: status_line(kiosk, link, watch.status, documents))
    watch.status.on_change(service.refresh)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"kiosk {config.kiosk.id} running (camera {kiosk.camera.name}, display {kiosk.display.name}); "
               "Ctrl-C stops", err=True)
    staff = None
    try:
        if config.staff is not None:  # a taken port fails here with a ConfigError naming [staff] port
            from kiosk.web.serve import serve_staff  # Flask: only for a kiosk with a staff screen

            staff = serve_staff(kiosk, config, link=link)
            click.echo(f"staff screen on {staff.url}", err=True)
        run_loop(kiosk, kiosk.camera, stop, on_result=lambda r: _print(r, as_json),
                 updates=link.updates if link is not None else None, service=service)
    except Exception as exc:  # noqa: BLE001 - reported in `state` and the log, then a non-zero exit
        watch.fail("scan loop", exc)
    finally:
        service.stopping(f"stopping: {watch.failed}" if watch.failed is not None else
                         "stopping: handing the outbox to the hub" if link is not None else "stopping")
        if staff is not None:
            staff.stop()
        kiosk.close()  # the camera, then blink threads, then the pins: no gpiozero traceback at exit
    if offline is not None:
        offline.stop()
    _stop_link(link, replay_finished=not stop.is_set())
    notifier.close()
    watch.uninstall()
    if watch.failed is not None:
        click.echo(f"error: {watch.failed}; see the log", err=True)
        sys.exit(1)


def _start_link(config: KioskConfig, boot: str, documents):
    """The started hub link, None without ``[mqtt]``; its modules (paho, ssl, the wire messages)
    are imported only for a kiosk that has a hub."""
    if config.mqtt is None:
        return None
    from kiosk.link.hub_link import start_hub_link

    return start_hub_link(config, boot, documents)


def _stop_link(link, replay_finished: bool) -> None:
    """A clean stop waits (bounded) for the hub to acknowledge the outbox, then says what is left."""
    if link is None:
        return
    link.stop(drain=10.0 if replay_finished else 5.0)
    left = link.sender.outbox_left
    if left:
        click.echo(f"outbox: {left} event(s) not yet acknowledged by the hub; they stay in the ledger "
                   "and are sent at the next start", err=True)
    else:
        click.echo("outbox: every event acknowledged by the hub", err=True)


@main.command()
@_config_opt
@_data_opt
@click.option("--json", "as_json", is_flag=True)
def redeem(config_path, data_dir, as_json) -> None:
    """Press the staff button: redeem the ready reward of the customer at the counter."""
    from kiosk.wiring import build_kiosk

    config = _load(config_path, data_dir)
    kiosk = _guard(lambda: build_kiosk(config, live=False))
    _print(kiosk.press_button(), as_json)


@main.command("simulate-program")
@click.option("--program", "program_path", required=True, type=click.Path(dir_okay=False), help="Programme TOML.")
@click.option("--visits", "visits_path", required=True, type=click.Path(dir_okay=False),
              help="CSV: member,time[,amount,birthday,referred_by,redeem]")
@click.option("--json", "as_json", is_flag=True)
def simulate_program(program_path, visits_path, as_json) -> None:
    """Run a list of visits through a programme and print the ledger and balances."""
    from kiosk.rules.program import load_program
    from kiosk.rules.simulate import parse_visits, simulate

    program = _guard(lambda: load_program(program_path))
    rows = _guard(lambda: parse_visits(Path(visits_path).read_text(), program))
    result = simulate(program, rows)
    balances = result.balances(program)
    if as_json:
        click.echo(json.dumps({"program": program.name, "unit": program.unit, "balances": balances,
                               "ledger": result.ledger, "notes": result.notes}, indent=2))
        return
    for line in result.ledger:
        click.echo(f"{line['time']}  {line['member']:<12} {line['kind']:<11} {line['delta']:>+6}  {line['rule']}")
    click.echo("")
    for member, b in balances.items():
        tier = f", tier {b['tier']}" if b["tier"] else ""
        ready = f", ready: {', '.join(b['rewards_ready'])}" if b["rewards_ready"] else ""
        click.echo(f"{member}: {b[program.unit]} {program.unit}{tier}{ready}")
    for note in result.notes:
        click.echo(f"note: {note}")


@main.command()
@_config_opt
@_data_opt
@click.option("--member", required=True, help="Member id (from the pass).")
@click.option("--json", "as_json", is_flag=True)
def explain(config_path, data_dir, member, as_json) -> None:
    """Print a member's balance with the rule behind every ledger entry."""
    from kiosk.ledger import Ledger
    from kiosk.protocol.event import Event
    from kiosk.rules import ready_rewards
    from kiosk.wiring import effective_config, ledger_path

    config = _load(config_path, data_dir)
    path = ledger_path(config)
    if not path.exists():
        click.echo(f"error: {path}: no ledger here; pass --data-dir or --config", err=True)
        sys.exit(2)
    ledger = Ledger(path)
    program = _guard(lambda: effective_config(config)).program  # the programme the hub pushed, if any
    rows, balance = [], 0
    # this kiosk's events and those of the merchant's other kiosks, in the order every kiosk folds them
    for event in sorted(ledger.events(member) + ledger.foreign_events(member), key=Event.order):
        balance += event.delta
        rows.append({"time": event.occurred_at.isoformat(), "kind": event.kind, "delta": event.delta,
                     "rule": event.rule, "reward": event.reward, "balance": balance,
                     "detail": {k: v for k, v in event.detail.items() if k != "cause"}})
    state = ledger.member_state(member, program)
    summary = {"member": member, program.unit: state.balance, "tier": state.tier,
               "rewards_ready": list(ready_rewards(state, state.last_activity_at, program)) if rows else []}
    if as_json:
        click.echo(json.dumps({**summary, "entries": rows}, indent=2))
        return
    if not rows:
        click.echo(f"member {member}: no entries in {path}")
        return
    for r in rows:
        why = f"  ({r['detail'].get('reason')})" if r["detail"].get("reason") else ""
        click.echo(f"{r['time'][:16]}  {r['kind']:<11} {r['delta']:>+6}  = {r['balance']:<6} {r['rule']}{why}")
    ready = ", ".join(summary["rewards_ready"]) or "none"
    click.echo(f"balance: {state.balance} {program.unit}; tier: {state.tier or '-'}; rewards ready: {ready}")


def _load(config_path, data_dir, **overrides) -> KioskConfig:
    return _guard(lambda: load_config(config_path, kiosk__data_dir=data_dir, **overrides))


def _print(result: ScanResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    parts = [f"{result.image}: {result.outcome}"]
    if result.member:
        parts.append(f"member {result.member} {result.balance}/{result.goal}")
    if result.reason:
        parts.append(f"({result.reason})")
    click.echo(" ".join(parts))


def _guard(fn):
    try:
        return fn()
    except StempelError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
