"""The owner dashboard's figures, computed in SQL from the hub's ledger (``hub_events``).

``activity`` defines the period and the per-member aggregates every figure is made from;
``queries`` reads them (and the few period totals) with GROUP BY queries; ``formulas``,
``series``, ``cohorts`` and ``lists`` turn them into figures, daily series, a retention grid and
member lists without touching the database; ``dashboard`` puts it together and writes CSV.
"""
