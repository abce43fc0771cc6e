"""The soak test's check and plot (dev/soak.py), on made-up samples: no broker, no worker."""

from __future__ import annotations

import xml.dom.minidom

from dev.soak import FIGURES, grown, svg


def rows(rss: list[float], lag: float = 10.0) -> list[dict[str, float]]:
    return [{"t_s": 10.0 * n, "rss_mb": value, "threads": 17.0, "open_fds": 46.0, "lag": lag, "commit_ms": 9.0}
            for n, value in enumerate(rss)]


def test_a_steady_worker_passes_and_one_that_grows_after_the_warm_up_fails() -> None:
    assert grown(rows([60.0] * 3 + [100.0] * 9), warmup_s=30) == []  # the warm-up's rise is not growth
    problems = grown(rows([100.0] * 3 + [100.0, 101.0, 102.0, 110.0, 115.0, 120.0, 130.0, 140.0, 150.0]), 30)
    assert problems == ["rss_mb grew from 101.0 to 140.0"]


def test_growth_under_a_figures_noise_floor_is_not_growth() -> None:
    assert grown(rows([10.0] * 12), 30) == []
    assert grown([{**row, "lag": 30.0 * n} for n, row in enumerate(rows([10.0] * 12))], 30) == []  # 90 -> 300


def test_too_few_samples_is_said() -> None:
    assert grown(rows([1.0, 1.0]), 30) == ["only 0 samples after the warm-up: nothing to compare"]


def test_the_plot_is_svg_with_a_line_per_figure() -> None:
    document = xml.dom.minidom.parseString(svg(rows([1.0, 2.0, 3.0]), 10.0))
    assert len(document.getElementsByTagName("polyline")) == len(FIGURES)
