"""Open a page in headless Chromium and watch it through Selenium WebDriver.

The browser and its driver are Debian's `chromium` and `chromium-driver`; the driver package depends on
the exact browser version, so the two always match. Both paths are given to Selenium, so Selenium Manager
is never asked to find (or download) either. Console messages and log entries (CSP violations, failed
loads, uncaught exceptions) come from chromedriver's browser log. A command that meets a JavaScript dialog
fails (UnexpectedAlertPresentException); we record the dialog's text, accept it and retry the command
(accepting explicitly: with "accept and notify" chromedriver sometimes reported one dialog twice).
Evaluation through the driver is not subject to the page's CSP.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, UnexpectedAlertPresentException
from selenium.webdriver.chrome.service import Service

# Nothing is fetched from the network: no updates, components, sync or QUIC probes.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class Chromium(NamedTuple):
    binary: str
    driver: str


def find_chromium() -> Chromium | None:
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    return Chromium(binary, driver) if binary and driver else None


def ensure_chromium() -> Chromium:
    """The browser and its driver, installed with apt-get (`chromium`, `chromium-driver`) when either is missing."""
    found = find_chromium()
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (sudo + ["apt-get", "update", "-q"],
                sudo + ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, timeout=900)
    found = find_chromium()
    if not found:
        raise RuntimeError("apt-get installed chromium and chromium-driver but chromium or chromedriver is not on PATH")
    return found


class Page:
    """One Chromium page under WebDriver control. Use as a context manager.

    `log`: chromedriver's browser log entries (dicts with level, source, message), gathered by problems();
    `dialogs`: the messages of JavaScript dialogs, each accepted so that the page goes on.
    """

    def __init__(self, chromium: Chromium, width: int = 1280, height: int = 900, timeout: float = 60):
        self.timeout = timeout
        self.log: list[dict] = []
        self.dialogs: list[str] = []
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium.binary
        for flag in (*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.unhandled_prompt_behavior = "ignore"  # a command that meets a dialog fails; _run accepts it
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(chromium.driver))
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(timeout)
        self.driver.set_script_timeout(timeout)

    def _run(self, command, *args):
        """A driver command; a dialog that blocks it is recorded and accepted, then the command is retried."""
        for _ in range(100):
            try:
                return command(*args)
            except UnexpectedAlertPresentException:
                self._accept_dialog()
        raise RuntimeError(f"the page keeps opening dialogs: {self.dialogs[-3:]}")

    def _accept_dialog(self) -> None:
        try:
            alert = self.driver.switch_to.alert
            self.dialogs.append(alert.text)
            alert.accept()
        except NoAlertPresentException:
            pass

    def open(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        try:
            self.driver.get(url)
        except UnexpectedAlertPresentException:  # not retried: that would load the page again
            self._accept_dialog()
        deadline = time.time() + self.timeout
        while self.evaluate("document.readyState") != "complete":
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)

    def evaluate(self, expression: str):
        return self._run(self.driver.execute_script, f"return ({expression});")

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the viewport."""
        w, h = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self._run(self.driver.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride",
                  {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
        shot = self._run(self.driver.execute_cdp_cmd, "Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True})
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors and warnings, log entries of level error/warning (CSP violations, failed loads),
        uncaught exceptions, dialogs."""
        self.evaluate("1")  # round trip: a dialog opened since the last command is reported now
        self.log += self.driver.get_log("browser")
        out = [f"log {e['level']} ({e.get('source')}): {e['message']}" for e in self.log
               if e["level"] in ("SEVERE", "WARNING")]
        return out + [f"dialog: {m}" for m in self.dialogs]

    def close(self) -> None:
        try:
            self.driver.quit()  # ends chromedriver and the browser
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
