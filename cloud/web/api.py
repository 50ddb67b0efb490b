"""``/api/v1/``: what a POS or an export script needs, with a per-merchant bearer token
(``Authorization: Bearer stp_...``, made on the owner's token page). A token sees only its
merchant; anything else is a 404, as on the owner pages."""

from __future__ import annotations

import functools
from datetime import timedelta

from flask import Blueprint, abort, g, jsonify, request

from cloud import cards, members
from cloud.accounts import token_merchant
from cloud.metrics.dashboard import dashboard
from cloud.programs import program_of
from cloud.web import context
from kiosk.common.errors import ConfigError

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def token_required(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        merchant = token_merchant(context.hub().engine, header.removeprefix("Bearer ").strip()) \
            if header.startswith("Bearer ") else None
        if merchant is None:
            return jsonify({"error": "a valid API token is required (Authorization: Bearer ...)"}), 401
        g.api_merchant = merchant
        return view(*args, **kwargs)

    return guarded


def _summary(row) -> dict:
    return {"id": row.id, "name": None if row.erased_at else row.name, "joined_at": row.created_at.isoformat(),
            "erased": row.erased_at is not None}


@bp.route("/members")
@token_required
def list_members():
    query = request.args.get("q", "")[:100]
    try:
        found = members.search(context.hub().engine, g.api_merchant, query, limit=200)
    except ConfigError as exc:
        return jsonify({"error": str(exc)}), 400
    return jsonify({"members": [_summary(m) for m in found]})


@bp.route("/members/<member_id>")
@token_required
def member(member_id: str):
    row = members.get_member(context.hub().engine, g.api_merchant, member_id)
    if row is None:
        abort(404)
    view = cards.card(context.hub().engine, row, context.now())
    return jsonify({**_summary(row), "balance": view.state.balance, "unit": view.program.unit,
                    "visits": view.state.visits, "rewards_ready": list(view.ready), "tier": view.tier,
                    "goal": view.goal})


@bp.route("/metrics")
@token_required
def metrics():
    days = request.args.get("days", "30")
    if days not in ("7", "30", "90"):
        return jsonify({"error": "days is 7, 30 or 90"}), 400
    end = context.now()
    engine = context.hub().engine
    board = dashboard(engine, g.api_merchant, end - timedelta(days=int(days)), end,
                      program=program_of(engine, g.api_merchant))
    return jsonify({"merchant": g.api_merchant, "days": int(days),
                    "figures": {f.key: f.value for f in board.figures}})


@bp.errorhandler(404)
def _missing(exc):
    return jsonify({"error": "not found"}), 404
