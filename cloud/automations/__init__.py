"""Automated messages to members (issue 11): decided from the hub's ledger, sent at most once.

One job per module:

* ``triggers`` — pure: who is due for which message at a moment, in the shop's time zone;
* ``planner`` — reads members and visits, asks ``triggers``, records the decisions as rows;
* ``outbox`` — the ``messages`` table: record, claim with a lease, mark; who commits what when;
* ``policy`` — quiet hours (the weekly cap is enforced where messages are claimed, in ``outbox``);
* ``templates`` / ``compose`` — the German and English texts and the e-mail built from them;
* ``unsubscribe`` — the signed one-click link (RFC 8058) and what a click does;
* ``mailer`` — the SMTP channel, its errors sorted into "not sent", "refused" and "uncertain";
* ``webhook`` — the signed HTTP channel (HMAC-SHA256 over timestamp and body) for a shop's own CRM;
* ``worker`` — one sweep: plan, then deliver (``stempel-hub automations run``).
"""
