"""Headless Chromium for tests that look at pages as a person would (DVC plots, MLflow UI).

Uses Debian's ``chromium`` and ``chromium-driver`` through Selenium, with the flags this
offline machine needs. Tests that use it skip with the reason when Chromium is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def chromium_paths() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or skip the test saying what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "headless Chromium is not installed (Debian packages chromium and chromium-driver; "
            "`make test` installs them when it runs as root)"
        )
    return browser, driver


@contextmanager
def chromium(extra_flags: tuple[str, ...] = ()) -> Iterator:
    """A Selenium WebDriver on headless Chromium with a throw-away profile (and
    ``extra_flags``)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def broken_images(driver) -> list[str]:
    """``src`` of every <img> on the current page that did not load."""
    return driver.execute_script(
        "return Array.from(document.images)"
        ".filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src);"
    )
