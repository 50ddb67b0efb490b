"""The owner's campaign pages: write an announcement (English and/or German), pick a segment,
preview it as a chosen member will get it (their real card: name, balance, link), send a test
to the owner's own address through the hub's SMTP server, then send it to the segment.

Owners only (staff cannot write to every customer); a campaign or member of another merchant is
a 404; every form carries the CSRF token. Sending records the message rows (campaigns.plan); the
automations worker delivers them under consent, weekly cap and quiet hours like any message.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from cloud.automations import compose, segments, templates
from cloud.automations.campaigns import CAMPAIGN, Campaign, CampaignStore, mark_sent, new_campaign, plan
from cloud.models import Member, Message
from cloud.programs import program_of
from cloud.web import context, testsend
from cloud.web.context import login_required
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError

bp = Blueprint("campaigns", __name__, url_prefix="/owner/campaigns")
OWNER = ("owner",)


def store() -> CampaignStore:
    """This app's campaign store, made on first use (per web worker): that imports the previous
    release's campaign files from the data dir, once (campaigns.import_files)."""
    stempel = current_app.extensions["stempel"]
    if "campaigns" not in stempel:
        hub = context.hub()
        stempel.setdefault("campaigns", CampaignStore(hub.engine, hub.data_dir))
    return stempel["campaigns"]


def _campaign(campaign_id: str) -> Campaign:
    found = store().get(context.account().merchant, campaign_id)
    if found is None:
        abort(404)
    return found


def _words() -> dict[str, tuple[str, str]]:
    return {lang: (request.form.get(f"subject_{lang}", "")[:1000], request.form.get(f"body_{lang}", "")[:10000])
            for lang in templates.LANGUAGES}


@bp.route("/", methods=["GET", "POST"])
@login_required(OWNER)
def index():
    hub, who = context.hub(), context.account()
    program = program_of(hub.engine, who.merchant)
    if request.method == "POST":
        try:
            made = new_campaign(who.merchant, request.form.get("segment", ""), request.form.get("tier") or None,
                                _words(), program, who.login, context.now())
        except ConfigError as exc:
            flash(str(exc), "error")
        else:
            store().save(made)
            flash("Campaign saved. Preview it with a member, send yourself a test, then send it.", "ok")
            return redirect(url_for(".show", campaign_id=made.id))
    return render_template("campaigns.html", campaigns=store().list(who.merchant), labels=segments.LABELS,
                           tiers=[t.name for t in program.tiers.levels] if program.tiers else [],
                           form=request.form)


def _render(campaign: Campaign, member: Member) -> templates.Rendered:
    """*campaign* as *member* gets it now: their card's values, their language."""
    hub = context.hub()
    filled, language = compose.values(hub.engine, hub.keys, secret_key(hub.data_dir), member, context.now())
    return templates.render(CAMPAIGN, language, filled, campaign.text(language))


@bp.route("/<campaign_id>")
@login_required(OWNER)
def show(campaign_id: str):
    campaign = _campaign(campaign_id)
    member = context.preview_member(campaign.merchant)
    try:
        preview = _render(campaign, member) if member is not None else None
    except ConfigError as exc:
        preview = None
        flash(f"Cannot write the preview: {exc}", "error")
    return render_template("campaign.html", campaign=campaign, member=member, preview=preview,
                           label=segments.LABELS[campaign.segment], login=context.account().login)


@bp.route("/<campaign_id>/test", methods=["POST"])
@login_required(OWNER)
def test(campaign_id: str):
    """Send the preview for the chosen member to the signed-in owner's own address."""
    campaign = _campaign(campaign_id)
    member = context.preview_member(campaign.merchant)

    def write(sender: str, now: datetime) -> EmailMessage:
        hub = context.hub()
        filled, language = compose.values(hub.engine, hub.keys, secret_key(hub.data_dir), member, now)
        return compose.email(Message(id=0, trigger=CAMPAIGN, occasion=campaign.id), member, sender, filled,
                             language, now, campaign.text(language))
    testsend.to_owner(member, write)
    return redirect(url_for(".show", campaign_id=campaign.id, member=member.id if member else None))


@bp.route("/<campaign_id>/send", methods=["POST"])
@login_required(OWNER)
def send(campaign_id: str):
    campaign, who = _campaign(campaign_id), context.account()
    if campaign.sent_at is not None:
        flash("This campaign was sent already; write a new one for another announcement.", "error")
        return redirect(url_for(".show", campaign_id=campaign.id))
    hub, now = context.hub(), context.now()
    try:
        done = plan(hub.engine, campaign, program_of(hub.engine, campaign.merchant), now,
                    hub.config.automations.channels)
    except ConfigError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".show", campaign_id=campaign.id))
    mark_sent(store(), campaign, done, who.login, now)
    flash(f"{done.in_segment} member(s) in the segment, {done.reachable} agreed to news: "
          f"{sum(done.recorded.values())} message(s) queued; the automations worker sends them "
          "(weekly cap and quiet hours apply).", "ok")
    return redirect(url_for(".show", campaign_id=campaign.id))
