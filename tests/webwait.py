"""Waiting for the next page in Selenium tests.

``expected_conditions.staleness_of`` counts only StaleElementReferenceException as "the
old page is gone"; Chromium, asked about the old page's element in the instant the new
document replaces it, may answer instead with an inspector error ("Node with given id does
not belong to the document"). Seen under load in CI: both mean the old page is gone.
"""

from __future__ import annotations

from typing import Any


def next_page(browser: Any, page: Any, timeout_s: float = 60.0) -> None:
    """Wait until ``page`` (the old page's ``html`` element) is gone and the new page has
    loaded."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(_: Any) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc.msg):
                return True
            raise
        return False

    wait = WebDriverWait(browser, timeout_s)
    wait.until(gone)
    wait.until(lambda b: b.execute_script("return document.readyState") == "complete")
