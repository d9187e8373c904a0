"""RESULTS.md is what the result files give (scripts/results_page.py writes it; nobody edits it by hand)."""

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
results_page = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_page)


def test_the_results_page_matches_the_result_files():
    assert results_page.main(["--check"]) == 0, "run `python scripts/results_page.py` and commit RESULTS.md"


def test_every_result_file_is_on_the_page_with_its_intervals():
    text = results_page.page()
    for path in sorted(results_page.results.FOLDER.glob("*.json")):
        assert f"`results/{path.stem}.json`" in text
    assert "0.84 [0.81, 0.86]" in text  # stage 1's LCM-LoRA at 1 step: 0.837 of 960 images, with its interval
