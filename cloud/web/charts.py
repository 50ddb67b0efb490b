"""Server-rendered charts for the hub's pages: SVG and HTML strings, no JavaScript, no CDN.

Safe by construction: the markup is built only from numbers formatted here and from text passed
through ``markupsafe.escape``, so a template may inline the result with ``|safe``.

Responsive without shrinking the text: each SVG is ``width="100%"`` with a fixed pixel height and
places its bars in percentages of that width. A scaled ``viewBox`` would shrink 12 px labels to
7 px on a 390 px phone; here the text keeps its size and only the bars stretch. The x labels are
thinned for the narrowest width laid out for (``MIN_WIDTH_PX``), so they never collide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import escape

# One calm palette; text colours keep at least 4.5:1 on white, bar colours at least 3:1.
INK = "#1f2933"        # titles and values
MUTED = "#52606d"      # axis labels, messages
GRID = "#e4e7eb"       # gridlines
BASELINE = "#9aa5b1"   # the zero line
PRIMARY = "#2c7a7b"    # teal: visits, returning customers
ACCENT = "#c8852a"     # ochre: new customers
COHORT_LOW = "#f3f8f8"
COHORT_HIGH = "#5b9fa0"  # dark enough to read as "most", light enough for ink text (4.9:1)
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"

EMPTY_MESSAGE = "No visits in this period"
EMPTY_COHORTS = "No customers joined in this period"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

HEIGHT = 240          # px, every chart with data
EMPTY_HEIGHT = 110    # px, a chart with nothing to show
MIN_WIDTH_PX = 320    # the narrowest chart laid out for: a 390 px phone less the page's margins
LABEL_PX = 52         # room for one x label ("26 Nov" at 12 px, ~45 px) and the gap to the next
EDGE_PCT = 23 / MIN_WIDTH_PX * 100  # half a label: x labels are centred under their bars
PLOT_SHARE = 0.85     # of the chart's width, what is left for bars beside the edges
DIGIT_PX = 7.5        # width of one character of a 12 px tick label
LABEL_STEPS = (1, 2, 3, 7, 14, 28)  # label every Nth bar: days, then weeks, then 4-week months


def _e(text: object) -> str:
    return str(escape(str(text)))


def _num(value: float) -> str:
    """``1,204`` for whole numbers, ``3.25`` otherwise (at most two decimals; tiny values keep
    two significant digits rather than read as 0)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _short(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def _long(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _quantity(value: float, unit: str) -> str:
    """``14 visits``; exactly 1 drops a plural unit's final s (``1 visit``)."""
    if value == 1 and unit.endswith("s"):
        unit = unit[:-1]
    return f"{_num(value)} {unit}".rstrip()


def _check_counts(values: Iterable[float], what: str) -> None:
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} must be finite and not negative, got {value!r}")


def nice_ticks(peak: float, whole: bool) -> list[float]:
    """3 to 5 evenly spaced ticks from 0 to at least ``peak``, on steps of 1, 2, 2.5 or 5 × 10^k.

    ``whole`` keeps steps whole (counts are never shown as 0.5 visits). A peak under 10^-6 is
    drawn like 0: an axis of millionths says nothing on a dashboard.
    """
    if peak < 1e-6:
        return [0.0, 1.0, 2.0] if whole else [0.0, 0.5, 1.0]
    exponent = math.floor(math.log10(peak)) - 1
    for k in range(exponent, exponent + 3):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0 ** k
            if whole and not step.is_integer():
                continue
            intervals = math.ceil(peak / step)
            while intervals * step < peak:  # a rounding error in the division
                intervals += 1
            if intervals <= 4:
                intervals = max(intervals, 2)
                return [i * step for i in range(intervals + 1)]
    raise AssertionError("unreachable: a step of 10^(k+2) always fits")


def label_every(points: int) -> int:
    """Label every Nth bar so the labels fit side by side at ``MIN_WIDTH_PX``."""
    fits = max(1, int(MIN_WIDTH_PX * PLOT_SHARE) // LABEL_PX)
    needed = math.ceil(points / fits)
    for step in LABEL_STEPS:
        if step >= needed:
            return step
    return LABEL_STEPS[-1] * math.ceil(needed / LABEL_STEPS[-1])


@dataclass(frozen=True)
class _Frame:
    """Where the plot sits: x in percent of the width, y in pixels."""

    points: int
    ticks: list[float]
    top: float              # px
    bottom: float = HEIGHT - 32
    right: float = EDGE_PCT  # % kept free at the right for the last bar's centred label

    @property
    def gutter(self) -> float:
        """% of the width for the y labels: room for the longest at ``MIN_WIDTH_PX``, and at least
        for half of the first bar's centred x label."""
        chars = max(len(_num(t)) for t in self.ticks)
        return max(EDGE_PCT, min(18.0, (chars * DIGIT_PX + 10) / MIN_WIDTH_PX * 100))

    @property
    def slot(self) -> float:
        return (100 - self.gutter - self.right) / self.points

    def x(self, index: int) -> float:
        return self.gutter + index * self.slot

    def bar(self, index: int) -> tuple[float, float]:
        """Left edge and width (%) of bar ``index``: 70 % of its slot, at most 10 % of the chart."""
        width = min(self.slot * 0.7, 10.0)
        return self.x(index) + (self.slot - width) / 2, width

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - self.top) * value / self.ticks[-1]


def _pct(value: float) -> str:
    return f"{value:.3f}%"


def _open(title: str, height: int, summary: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="100%" height="{height}" '
        f'role="img" aria-label="{_e(title)}" font-family="{FONT}" font-size="12" '
        f'style="display:block;max-width:100%;overflow:visible">',
        f"<title>{_e(title)}</title>",
        f"<desc>{_e(summary)}</desc>",
        f'<text class="chart-title" x="0" y="16" font-size="14" font-weight="600" fill="{INK}">'
        f"{_e(title)}</text>",
    ]


def _empty(title: str) -> str:
    parts = _open(title, EMPTY_HEIGHT, EMPTY_MESSAGE)
    parts.append(f'<text class="empty" x="50%" y="{EMPTY_HEIGHT // 2 + 16}" text-anchor="middle" '
                 f'font-size="14" fill="{MUTED}">{_e(EMPTY_MESSAGE)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _grid(frame: _Frame) -> list[str]:
    """Gridlines with their values at the left, the zero line darker."""
    parts = []
    for tick in frame.ticks:
        y = frame.y(tick)
        colour = BASELINE if tick == 0 else GRID
        parts.append(f'<line x1="{_pct(frame.gutter)}" x2="{_pct(100 - frame.right)}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1"/>')
        parts.append(f'<text class="tick" x="{_pct(frame.gutter)}" dx="-6" y="{y + 4:.1f}" '
                     f'text-anchor="end" fill="{MUTED}">{_num(tick)}</text>')
    return parts


def _x_labels(frame: _Frame, days: Sequence[date]) -> list[str]:
    """Every Nth day counted back from the latest, so the most recent bar is always labelled;
    each centred under its bar (the edges keep room for half a label)."""
    every = label_every(len(days))
    y = frame.bottom + 18
    parts = []
    for index in range(len(days) - 1, -1, -every):
        x = frame.x(index) + frame.slot / 2
        parts.append(f'<text class="day" x="{_pct(x)}" y="{y:.1f}" text-anchor="middle" '
                     f'fill="{MUTED}">{_e(_short(days[index]))}</text>')
    return parts


def _column(frame: _Frame, index: int, tip: str, segments: Sequence[tuple[float, float, str]]) -> str:
    """One bar: a tooltip, an invisible full-height target so short bars are easy to hover, and
    its coloured segments given as (from, to, colour) in data units."""
    slot_x = frame.x(index)
    x, width = frame.bar(index)
    parts = [f'<g class="bar"><title>{_e(tip)}</title>',
             f'<rect x="{_pct(slot_x)}" width="{_pct(frame.slot)}" y="{frame.top:.1f}" '
             f'height="{frame.bottom - frame.top:.1f}" fill="#000" fill-opacity="0"/>']
    for low, high, colour in segments:
        if high <= low:
            continue
        y_top, y_low = frame.y(high), frame.y(low)
        parts.append(f'<rect x="{_pct(x)}" width="{_pct(width)}" y="{y_top:.1f}" '
                     f'height="{y_low - y_top:.1f}" fill="{colour}"/>')
    parts.append("</g>")
    return "".join(parts)


def bar_chart(series: list[tuple[date, float]], title: str, unit: str) -> str:
    """An SVG bar per point (visits per day), each with a hover tooltip ``26 Nov 2026: 14 visits``.

    ``unit`` is a plural noun; an empty series draws the "No visits in this period" message.
    Raises ValueError for a negative or non-finite value.
    """
    if not series:
        return _empty(title)
    values = [float(v) for _, v in series]
    _check_counts(values, "bar values")
    peak = max(values)
    top_day = series[values.index(peak)][0]
    summary = (f"{_long(series[0][0])} to {_long(series[-1][0])}: {_quantity(sum(values), unit)} "
               f"in all, at most {_quantity(peak, unit)} on {_long(top_day)}")
    frame = _Frame(len(series), nice_ticks(peak, all(v.is_integer() for v in values)), top=36)
    parts = _open(title, HEIGHT, summary) + _grid(frame)
    for index, (day, value) in enumerate(series):
        tip = f"{_long(day)}: {_quantity(value, unit)}"
        parts.append(_column(frame, index, tip, [(0.0, value, PRIMARY)]))
    parts += _x_labels(frame, [day for day, _ in series])
    parts.append("</svg>")
    return "".join(parts)


def _legend(labels: Sequence[str], colours: Sequence[str], y: float) -> list[str]:
    parts, x = [], 0.0
    for label, colour in zip(labels, colours):
        parts.append(f'<rect class="swatch" x="{x:.0f}" y="{y - 10:.0f}" width="12" height="12" '
                     f'rx="2" fill="{colour}"/>')
        parts.append(f'<text class="legend" x="{x + 18:.0f}" y="{y:.0f}" fill="{INK}">{_e(label)}</text>')
        x += 18 + len(label) * DIGIT_PX + 20
    return parts


def stacked_bars(series: list[tuple[date, int, int]], labels: tuple[str, str] = ("new", "returning"),
                 title: str = "New and returning customers", per: str = "day") -> str:
    """An SVG stacked bar per day or week (``per``): the first count at the bottom, with a legend.

    For weeks, give each week's first day; tooltips then read ``Week of 23 Nov 2026: 5 new, 9
    returning``. Raises ValueError for a negative count or an unknown ``per``.
    """
    if per not in ("day", "week"):
        raise ValueError(f"per must be 'day' or 'week', got {per!r}")
    if not series:
        return _empty(title)
    _check_counts([c for _, a, b in series for c in (a, b)], "customer counts")
    first, second = labels
    totals = [a + b for _, a, b in series]
    summary = (f"{_long(series[0][0])} to {_long(series[-1][0])}: "
               f"{_num(sum(a for _, a, _ in series))} {first}, "
               f"{_num(sum(b for _, _, b in series))} {second}")
    frame = _Frame(len(series), nice_ticks(max(totals), whole=True), top=58)
    parts = _open(title, HEIGHT, summary) + _legend(labels, (ACCENT, PRIMARY), y=40) + _grid(frame)
    for index, (day, a, b) in enumerate(series):
        when = f"Week of {_long(day)}" if per == "week" else _long(day)
        tip = f"{when}: {_num(a)} {first}, {_num(b)} {second}"
        parts.append(_column(frame, index, tip, [(0, a, ACCENT), (a, a + b, PRIMARY)]))
    parts += _x_labels(frame, [day for day, _, _ in series])
    parts.append("</svg>")
    return "".join(parts)


def _mix(low: str, high: str, t: float) -> str:
    a = [int(low[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(high[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21; text wants 4.5, shapes 3)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def cell_colours(percent: float) -> tuple[str, str]:
    """Background and text colour for a cohort cell: darker for more, text in whichever of ink or
    white reads better on it (ink, on this scale). The scale is lifted (power 0.6) so 10–30 %
    still shows."""
    background = _mix(COHORT_LOW, COHORT_HIGH, (percent / 100) ** 0.6)
    text = max((INK, "#ffffff"), key=lambda c: contrast_ratio(c, background))
    return background, text


def cohort_grid_html(rows: list[tuple[str, int, list[float | None]]],
                     caption: str = "Customers who came back, by month of joining") -> str:
    """An HTML table: month of joining, cohort size, then the percent (0–100) of that cohort who
    visited in each month since joining; None (a month not over yet) is an empty cell.

    The table scrolls sideways inside its box, so a year of months fits a phone. Raises ValueError
    for a percentage outside 0–100 or a negative cohort size.
    """
    if not rows:
        return f'<p class="cohort-empty" style="color:{MUTED}">{_e(EMPTY_COHORTS)}</p>'
    for joined, size, percents in rows:
        if size < 0:
            raise ValueError(f"cohort {joined!r} has a negative size {size}")
        for p in percents:
            if p is not None and not (math.isfinite(p) and 0 <= p <= 100):
                raise ValueError(f"cohort {joined!r}: percentages are 0–100, got {p!r}")
    months = max(len(percents) for _, _, percents in rows)
    cell = "padding:6px 10px;text-align:right;white-space:nowrap"
    head = f"padding:6px 10px;font-weight:600;color:{INK};white-space:nowrap"
    # The title sits outside the scrolling box: a <caption> is as wide as the table, so on a
    # phone it would be cut off where the box ends.
    parts = [
        '<div class="cohort-grid">',
        f'<p class="chart-title" style="margin:0 0 6px;font-family:{FONT};font-size:14px;'
        f'font-weight:600;color:{INK}">{_e(caption)}</p>',
        '<div style="overflow-x:auto;max-width:100%">',
        f'<table aria-label="{_e(caption)}" style="border-collapse:separate;border-spacing:2px;'
        f'font-family:{FONT};font-size:13px;font-variant-numeric:tabular-nums;color:{INK}">',
        "<thead>",
        f'<tr><td colspan="2"></td><th scope="colgroup" colspan="{months}" '
        f'style="{head};text-align:left;color:{MUTED};font-weight:400">Months since joining</th></tr>',
        f'<tr><th scope="col" style="{head};text-align:left">Joined</th>'
        f'<th scope="col" style="{head};text-align:right">Customers</th>',
    ]
    parts += [f'<th scope="col" style="{head};text-align:right">{m}</th>' for m in range(months)]
    parts += ["</tr>", "</thead>", "<tbody>"]
    for joined, size, percents in rows:
        parts.append(f'<tr><th scope="row" style="{head};text-align:left">{_e(joined)}</th>'
                     f'<td style="{cell}">{_num(size)}</td>')
        for p in list(percents) + [None] * (months - len(percents)):
            if p is None:
                parts.append('<td class="none"></td>')
                continue
            background, text = cell_colours(p)
            parts.append(f'<td style="{cell};background:{background};color:{text}">{p:.0f}%</td>')
        parts.append("</tr>")
    parts += ["</tbody>", "</table>", "</div>", "</div>"]
    return "".join(parts)
