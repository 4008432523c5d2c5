"""Hostile results files against the page's new per-row fields (issue 13, item 6; issue 12):
paper and code links, strategy, total parameters, date and confidence interval all come
from a results file anyone can submit. A link is kept only as a plain ``https://`` URL; any
other text is escaped and capped; a number that is not a finite one shows as a dash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aims.leaderboard.entries import add_results, collect, entry_from_results, safe_url
from aims.leaderboard.render import markdown, page

from .test_leaderboard import HOSTILE_NAME, valid_doc

HOSTILE_URLS = [
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", " https://e.example/", "data:text/html,<script>alert(1)</script>",
    "http://plain.example/", "//evil.example/x", 'https://e.example/" onmouseover="alert(1)',
    "https://e.example/<script>", "https://e.example/" + "a" * 400, "https://e.example/\u202eexe.txt",
    "https://e.example/a b", "https://user:pw@e.example/", 12345, None, ["https://e.example/"], {"u": 1},
]


def _page_for(tmp_path: Path, **meta) -> tuple[str, str]:
    doc = valid_doc()
    doc["meta"].update(meta)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(doc))
    add_results(source, tmp_path / "results")  # validated like every submission
    entries = collect(tmp_path / "results")
    return page(entries, version="0"), markdown(entries)


@pytest.mark.parametrize("url", HOSTILE_URLS, ids=range(len(HOSTILE_URLS)))
def test_only_plain_https_links_survive(tmp_path, url):
    assert safe_url(url) is None
    html_page, table = _page_for(tmp_path, paper_url=url, code_url=url)
    hrefs = re.findall(r'href="([^"]*)"', html_page)
    assert set(h for h in hrefs if h.startswith("http")) == {"https://arxiv.org/abs/2411.18669",
                                                              "https://github.com/mt-cly/SimCMF"}
    assert "alert(" not in html_page.split("<script>")[0] and "javascript" not in html_page.lower()
    assert "evil.example" not in html_page and "e.example" not in html_page + table


def test_a_plain_https_link_is_kept_and_escaped(tmp_path):
    url = "https://e.example/paper?id=1&v=2#s3"
    assert safe_url(url) == url
    html_page, _ = _page_for(tmp_path, paper_url=url)
    assert 'href="https://e.example/paper?id=1&amp;v=2#s3"' in html_page


@pytest.mark.parametrize("strategy", [HOSTILE_NAME, "s" * 10_000, 7, ["vipt"], {"a": "vipt"}])
def test_strategy_is_text_escaped_and_capped(tmp_path, strategy):
    html_page, table = _page_for(tmp_path, strategy=strategy, input_prior="rgb-x-unshuffled")
    assert "<script>alert(1)" not in html_page and "<!-- leaderboard:end -->" not in table
    assert "s" * 65 not in html_page  # capped at 64 characters
    assert "RGB-X methods on SAM" in html_page  # the prior alone puts it in Table 6


@pytest.mark.parametrize("count", [-5, True, "94500000", 1e300, [1], None])
def test_total_params_that_are_not_a_count_show_a_dash_or_a_bounded_number(tmp_path, count):
    html_page, _ = _page_for(tmp_path, strategy="vipt", total_params=count)
    row = next(r for r in html_page.split("<tr") if "shifted-gt" in r)
    assert not re.search(r"\d{30}|>nan<|>inf<", row)
    params = re.findall(r'<td class="num" data-value="([^"]*)">', row)[0]
    assert (params == "") == (count != 1e300)  # only a finite, non-negative number is a count


@pytest.mark.parametrize("created", ["<script>alert(1)</script>", "yesterday", "", 5, "2024-13-99junk"])
def test_a_date_that_is_not_one_is_left_blank(created):
    doc = valid_doc()
    doc["created"] = created
    entry = entry_from_results(doc)  # what collect builds after validation; robust even without it
    assert entry.date == ""
    html_page = page([entry], version="0")
    assert "<script>alert(1)" not in html_page


@pytest.mark.parametrize("ci", [[0.6, 0.4], [None, 0.5], ["a", "b"], [0.1], 0.5, [float("nan"), 0.2]])
def test_a_malformed_interval_is_not_shown(ci):
    doc = valid_doc()
    doc["configs"]["depth"]["ci95"] = ci
    entry = entry_from_results(doc)
    html_page = page([entry], version="0")
    assert not re.search(r">(nan|inf)<| ±nan| ±-", html_page)
    assert entry.ci95 == {}  # none of these is an interval


def test_a_table6_strategy_with_no_rgb_x_config_still_renders(tmp_path):
    doc = valid_doc()
    doc["configs"]["polarization-zju"] = dict(doc["configs"].pop("depth"), modality=None)
    doc["meta"]["strategy"] = "gopt"
    entry = entry_from_results(doc)
    assert entry.group == "rgb-x systems" and entry.miou == {}
    assert "gopt" in page([entry], version="0")
