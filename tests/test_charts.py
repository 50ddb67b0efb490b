"""The dashboard's charts: SVG a browser draws legibly, escaped text, sensible axes."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from browser import browser, phone, screenshot, serve  # noqa: F401
from cloud.web.charts import (ACCENT, EMPTY_COHORTS, EMPTY_MESSAGE, INK, MUTED, PRIMARY, bar_chart,
                              cell_colours, cohort_grid_html, contrast_ratio, label_every, nice_ticks,
                              stacked_bars)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>" onload="alert(1)'
DAY = date(2026, 11, 26)


def days(n: int, start: date = date(2026, 10, 28), step: int = 1) -> list[date]:
    return [start + timedelta(days=i * step) for i in range(n)]


def visits(n: int, seed: int = 20261124) -> list[tuple[date, float]]:
    """A month's plausible visits: busier on Fridays and Saturdays, a few quiet days."""
    rng = random.Random(seed)
    return [(d, rng.randint(0, 6) + (12 if d.weekday() in (4, 5) else 6)) for d in days(n)]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "bar"]


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def visible_rects(bar: ET.Element) -> list[ET.Element]:
    return [r for r in bar.iter(f"{SVG}rect") if r.get("fill-opacity") != "0"]


# --- bar_chart -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 30, 90])
def test_one_bar_per_point(n):
    assert len(bars(parse(bar_chart(visits(n), "Visits per day", "visits")))) == n


def test_each_bar_says_its_day_and_count_on_hover():
    root = parse(bar_chart([(DAY, 14), (DAY + timedelta(days=1), 1), (DAY + timedelta(days=2), 2.5)],
                           "Visits", "visits"))
    tips = [g.find(f"{SVG}title").text for g in bars(root)]
    assert tips == ["26 Nov 2026: 14 visits", "27 Nov 2026: 1 visit", "28 Nov 2026: 2.5 visits"]


def test_bars_are_as_tall_as_their_values_and_zero_draws_nothing():
    root = parse(bar_chart([(DAY, 10), (DAY + timedelta(days=1), 0), (DAY + timedelta(days=2), 5)],
                           "Visits", "visits"))
    ten, zero, five = (visible_rects(g) for g in bars(root))
    assert zero == []
    assert float(ten[0].get("height")) == pytest.approx(2 * float(five[0].get("height")))


def test_the_y_axis_has_three_to_five_ticks_reaching_past_the_peak():
    root = parse(bar_chart(visits(30), "Visits", "visits"))
    ticks = [float(t) for t in texts(root, "tick")]
    assert 3 <= len(ticks) <= 5
    assert ticks[0] == 0 and ticks[-1] >= max(v for _, v in visits(30))


def test_x_labels_are_thinned_and_the_latest_day_is_labelled():
    root = parse(bar_chart(visits(30), "Visits", "visits"))
    labels = texts(root, "day")
    assert 3 <= len(labels) <= 5
    assert labels[0] == "26 Nov"  # counted back from the last day, 26 Nov
    assert "19 Nov" in labels      # a week before


def test_a_single_point_is_one_modest_bar():
    root = parse(bar_chart([(DAY, 3)], "Visits", "visits"))
    (bar,) = bars(root)
    (rect,) = visible_rects(bar)
    assert float(rect.get("width").rstrip("%")) <= 10
    assert texts(root, "day") == ["26 Nov"]


@pytest.mark.parametrize("chart", [lambda: bar_chart([], "Visits", "visits"),
                                   lambda: stacked_bars([], title="Customers")])
def test_an_empty_period_says_so(chart):
    root = parse(chart())
    assert bars(root) == []
    assert texts(root, "empty") == [EMPTY_MESSAGE]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_impossible_values_are_refused(bad):
    with pytest.raises(ValueError, match="not negative"):
        bar_chart([(DAY, bad)], "Visits", "visits")


# --- escaping --------------------------------------------------------------------------------

def test_hostile_text_stays_text_in_every_chart():
    svgs = [bar_chart([(DAY, 3)], HOSTILE, HOSTILE),
            stacked_bars([(DAY, 1, 2)], labels=(HOSTILE, HOSTILE), title=HOSTILE)]
    for svg in svgs:
        root = parse(svg)  # well-formed despite the quotes and brackets
        assert not [e for e in root.iter() if e.tag.endswith("script")]
        assert not [e for e in root.iter() if "onload" in e.attrib]
        assert root.get("aria-label") == HOSTILE
        assert root.find(f"{SVG}title").text == HOSTILE
        assert "<script>" not in svg


def test_hostile_cohort_label_and_caption_stay_text():
    html = cohort_grid_html([(HOSTILE, 3, [100.0])], caption=HOSTILE)
    root = ET.fromstring(html)
    assert not [e for e in root.iter() if e.tag == "script" or "onload" in e.attrib]
    assert root.find("p").text == HOSTILE
    assert root.find(".//table").get("aria-label") == HOSTILE
    assert root.find(".//tbody/tr/th").text == HOSTILE


# --- stacked_bars ----------------------------------------------------------------------------

def test_stacked_bars_stack_new_under_returning_with_a_legend():
    series = [(d, 2 + i % 3, 5 + i % 4) for i, d in enumerate(days(8, step=7))]
    root = parse(stacked_bars(series, per="week"))
    groups = bars(root)
    assert len(groups) == 8
    assert texts(root, "legend") == ["new", "returning"]
    assert groups[0].find(f"{SVG}title").text == "Week of 28 Oct 2026: 2 new, 5 returning"
    new, returning = visible_rects(groups[0])
    assert float(new.get("y")) == pytest.approx(float(returning.get("y")) + float(returning.get("height")))
    assert float(returning.get("height")) == pytest.approx(2.5 * float(new.get("height")))


def test_stacked_bars_per_day_name_the_day():
    root = parse(stacked_bars([(DAY, 0, 4)], labels=("neu", "wieder")))
    (group,) = bars(root)
    assert group.find(f"{SVG}title").text == "26 Nov 2026: 0 neu, 4 wieder"
    assert len(visible_rects(group)) == 1


def test_stacked_bars_refuse_an_unknown_period():
    with pytest.raises(ValueError, match="per must be"):
        stacked_bars([(DAY, 1, 1)], per="month")


# --- axes ------------------------------------------------------------------------------------

@settings(derandomize=True, max_examples=500, deadline=None)
@given(st.floats(min_value=0, max_value=1e7, allow_nan=False), st.booleans())
def test_nice_ticks_are_three_to_five_even_steps_from_zero_past_the_peak(peak, whole):
    if whole:
        peak = float(round(peak))
    ticks = nice_ticks(peak, whole)
    assert 3 <= len(ticks) <= 5
    assert ticks[0] == 0 and ticks[-1] >= peak
    step = ticks[1]
    assert all(b - a == pytest.approx(step) for a, b in zip(ticks, ticks[1:]))
    if whole:
        assert all(t.is_integer() for t in ticks)


@pytest.mark.parametrize("points, every", [(1, 1), (5, 1), (7, 2), (14, 3), (30, 7), (90, 28)])
def test_label_every(points, every):
    assert label_every(points) == every


# --- cohort grid -----------------------------------------------------------------------------

def test_cohort_grid_lists_joined_size_and_percentages():
    html = cohort_grid_html([("Sep 2026", 40, [100.0, 42.5, 20.0]), ("Oct 2026", 7, [100.0, None])])
    table = ET.fromstring(html).find(".//table")
    header = [th.text for th in table.findall("thead/tr")[1]]
    assert header == ["Joined", "Customers", "0", "1", "2"]
    sep, oct_ = table.findall("tbody/tr")
    assert [c.text for c in sep] == ["Sep 2026", "40", "100%", "42%", "20%"]
    assert [c.text for c in oct_] == ["Oct 2026", "7", "100%", None, None]  # None and not yet: empty
    shades = [c.get("style").split("background:")[1][:7] for c in sep[2:]]
    assert len(set(shades)) == 3


def test_the_palette_reads_on_white():
    assert min(contrast_ratio(c, "#ffffff") for c in (INK, MUTED)) >= 4.5  # text
    assert min(contrast_ratio(c, "#ffffff") for c in (PRIMARY, ACCENT)) >= 3  # bars


@pytest.mark.parametrize("percent", range(0, 101, 5))
def test_cohort_cells_keep_their_text_readable(percent):
    background, text = cell_colours(percent)
    assert contrast_ratio(background, text) >= 4.5


def test_cohort_grid_empty_and_refusals():
    assert EMPTY_COHORTS in cohort_grid_html([])
    with pytest.raises(ValueError, match="0–100"):
        cohort_grid_html([("Sep 2026", 4, [140.0])])


# --- in a real browser -----------------------------------------------------------------------

def page() -> bytes:
    """The three charts on one page, as the dashboard will show them."""
    weekly = [(d, 3 + (i * 5) % 7, 8 + (i * 3) % 9) for i, d in enumerate(days(12, step=7))]
    cohorts = [("Jun 2026", 52, [100.0, 46.2, 30.8, 25.0, 21.2, 19.2]),
               ("Jul 2026", 61, [100.0, 39.3, 27.9, 24.6, 18.0]),
               ("Aug 2026", 48, [100.0, 43.8, 33.3, 22.9]),
               ("Sep 2026", 70, [100.0, 51.4, 34.3]),
               ("Oct 2026", 66, [100.0, 40.9, None]),
               ("Nov 2026", 38, [100.0])]
    body = "".join(f'<section style="margin:0 0 28px">{chart}</section>' for chart in (
        bar_chart(visits(30), "Visits per day", "visits"),
        stacked_bars(weekly, per="week"),
        cohort_grid_html(cohorts),
        bar_chart([(DAY, 1)], 'Visits on "opening day" <Thu>', "visits"),
        bar_chart([], "Visits per day (last week)", "visits"),
    ))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>Charts</title></head>'
            f'<body style="margin:0;background:#fff"><main style="max-width:760px;margin:0 auto;'
            f'padding:16px">{body}</main></body></html>').encode()


def charts_app(environ, start_response):
    body = page()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


OVERLAPS = """
const boxes = [...document.querySelectorAll('svg.chart')].map(svg => {
  const outer = svg.getBoundingClientRect();
  const labels = [...svg.querySelectorAll('text.day, text.tick, text.legend, text.chart-title')]
    .map(t => t.getBoundingClientRect());
  const days = [...svg.querySelectorAll('text.day')].map(t => t.getBoundingClientRect());
  const collide = days.some((a, i) => days.slice(i + 1).some(b => a.left < b.right && b.left < a.right));
  const outside = labels.some(r => r.left < outer.left - 0.5 || r.right > outer.right + 0.5);
  return {width: outer.width, bars: svg.querySelectorAll('g.bar').length, collide, outside};
});
return boxes;
"""


def check_layout(driver, container_width: float) -> None:
    charts = driver.execute_script(OVERLAPS)
    assert [c["bars"] for c in charts] == [30, 12, 1, 0]
    for chart in charts:
        assert chart["width"] == pytest.approx(container_width, abs=1)
        assert not chart["collide"], "x labels overlap"
        assert not chart["outside"], "a label sticks out of its chart"


@pytest.mark.slow
def test_charts_are_legible_on_a_desktop(browser):
    with serve(charts_app) as url:
        browser.get(url + "/")
        check_layout(browser, 760)
        assert browser.find_element("css selector", ".cohort-grid .chart-title").is_displayed()
        path = screenshot(browser, "charts", full_page=True)
    assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_charts_are_legible_on_a_phone(phone):
    with serve(charts_app) as url:
        phone.get(url + "/")
        check_layout(phone, 390 - 32)
        screenshot(phone, "charts-phone", full_page=True)
