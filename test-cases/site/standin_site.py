"""A minimal stand-in of the Arm learning-paths site, built with Hugo and loaded in headless Chromium.

The stand-in keeps what decides how this learning path renders on the real site: the folder
content/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling/, a layout that
lists the folder's pages by weight in the left nav (every page whose file sits in that folder,
as the theme's learningpathall.html does) and shows only the metadata of _index.md, never its
body, an image hook that resolves images against the learning path's folder, and a link hook
that, like the site's, does not rewrite links.

Chromium is driven through the DevTools protocol over --remote-debugging-pipe (NUL-separated
JSON on file descriptors 3 and 4), so no extra package is needed.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

LP_DIR = "content/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling"
LP_URL = "/learning-paths/embedded-and-microcontrollers/sme-executorch-profiling/"
CONTENT_WIDTH_PX = 880  # narrower than the theme's content column at 1280 px (9 or 10 of 12 grid columns)
WINDOW = (1280, 900)

CONFIG = """baseURL = "http://127.0.0.1/"
title = "Stand-in of the Arm learning-paths site"
disableKinds = ["taxonomy", "term", "RSS", "sitemap", "robotsTXT", "404"]
[markup.goldmark.renderer]
unsafe = true
"""
LAYOUT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ .Title }}</title>
<style>
body { margin: 0; font: 16px/1.5 sans-serif; width: 1280px; }
#lp-nav { position: absolute; left: 0; top: 0; width: 240px; padding: 16px; box-sizing: border-box; }
main { margin-left: 264px; width: """ + str(CONTENT_WIDTH_PX) + """px; }
pre { overflow-x: auto; font: 14px/1.4 monospace; padding: 8px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
img { max-width: 100%; }
</style></head>
<body>
<nav id="lp-nav">
{{ $thisdir := .File.Dir }}
{{ with .Site.GetPage $thisdir }}<h6 id="lp-title">{{ .Params.title }}</h6>{{ end }}
<ol>
{{ range .Site.Pages.ByWeight }}{{ if .File }}{{ if eq .File.Dir $thisdir }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}{{ end }}{{ end }}
</ol>
</nav>
<main>
{{ if eq .File.TranslationBaseName "_index" }}
<h1>{{ .Title }}</h1>
<p class="who">{{ .Params.who_is_this_for }}</p>
<ul class="objectives">{{ range .Params.learning_objectives }}<li>{{ . }}</li>{{ end }}</ul>
<ul class="prerequisites">{{ range .Params.prerequisites }}<li>{{ . | markdownify }}</li>{{ end }}</ul>
{{ else }}
<h1>{{ .Title }}</h1>
{{ .Content }}
{{ end }}
</main>
</body></html>
"""
LIST = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ .Title }}</title></head>
<body><ul>{{ range .Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul></body></html>
"""
IMAGE_HOOK = """{{ $src := .Destination }}{{ $dir := path.Dir (trim .Page.RelPermalink "/") }}
{{ if and (in $dir "learning-paths") (not (strings.HasPrefix $src "http")) }}{{ $src = printf "/%s/%s" $dir .Destination }}{{ end }}
<img src="{{ $src | safeURL }}" alt="{{ .Text }}" title="{{ .Title }}">"""
LINK_HOOK = """<a href="{{ .Destination | safeURL }}">{{ .Text | safeHTML }}</a>"""
NOTICE = """<div class="notice"><p><b>{{ .Get 0 }}</b></p>{{ .Inner }}</div>"""

# Collected in the page after its load event.
PAGE_FACTS_JS = """(() => {
  const main = document.querySelector('main');
  const column = main.getBoundingClientRect();
  return {
    title: document.title,
    h1: (document.querySelector('main h1') || {textContent: ''}).textContent.trim(),
    nav: [...document.querySelectorAll('#lp-nav a')].map(a => [a.textContent.trim(), a.getAttribute('href')]),
    images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
    links: [...main.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    wide_code: [...main.querySelectorAll('pre')]
      .filter(p => p.scrollWidth > p.clientWidth + 1 || p.getBoundingClientRect().right > column.right + 1)
      .map(p => p.textContent.trim().split('\\n')[0].slice(0, 80)),
    body_words: main.innerText.split(/\\s+/).filter(Boolean).length,
  };
})()"""


def make_site(destination: Path, files: dict[str, bytes]) -> Path:
    """Write the stand-in site with the learning path's files (relative path -> bytes)."""
    (destination / "layouts/_default/_markup").mkdir(parents=True)
    (destination / "layouts/shortcodes").mkdir(parents=True)
    (destination / "hugo.toml").write_text(CONFIG)
    (destination / "layouts/_default/learningpathall.html").write_text(LAYOUT)
    (destination / "layouts/_default/list.html").write_text(LIST)
    (destination / "layouts/_default/single.html").write_text(LIST)
    (destination / "layouts/index.html").write_text(LIST)
    (destination / "layouts/_default/_markup/render-image.html").write_text(IMAGE_HOOK)
    (destination / "layouts/_default/_markup/render-link.html").write_text(LINK_HOOK)
    (destination / "layouts/shortcodes/notice.html").write_text(NOTICE)
    for section, title in (("content/learning-paths", "Learning Paths"),
                           ("content/learning-paths/embedded-and-microcontrollers", "Embedded and Microcontrollers")):
        (destination / section).mkdir(parents=True, exist_ok=True)
        (destination / section / "_index.md").write_text(f"---\ntitle: {title}\n---\n")
    for relative, data in files.items():
        target = destination / LP_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return destination


def hugo_env(hugo: Path) -> dict[str, str]:
    """Debian's hugo 0.111.3 needs the libsass unpacked beside it."""
    env = dict(os.environ)
    libdir = hugo.parent.parent / "lib/x86_64-linux-gnu"
    if libdir.is_dir():
        env["LD_LIBRARY_PATH"] = str(libdir)
    return env


def build(hugo: Path, site: Path) -> tuple[int, str]:
    """(exit status, everything Hugo printed) of one build into site/public."""
    shutil.rmtree(site / "public", ignore_errors=True)
    result = subprocess.run([str(hugo), "--source", str(site), "--printPathWarnings", "--cleanDestinationDir"],
                            capture_output=True, text=True, timeout=300, env=hugo_env(hugo))
    return result.returncode, result.stdout + result.stderr


def hugo_problems(status: int, output: str) -> list[str]:
    problems = [line for line in output.splitlines() if re.match(r"^\s*(WARN|ERROR|Error)\b", line)]
    if status != 0:
        problems.append(f"hugo exited with status {status}")
    return problems


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Server:
    """Serves a built site on 127.0.0.1 (absolute image paths need a web root)."""

    def __init__(self, root: Path) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(QuietHandler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Browser:
    """Headless Debian chromium driven over the DevTools pipe."""

    def __init__(self, chromium: str = "chromium") -> None:
        self.profile = tempfile.mkdtemp(prefix="h16-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # The child's ends move above 9, so the wrapper's redirections to 3 and 4 never clobber them.
        to_chrome_r, from_chrome_w = (self._above_nine(fd) for fd in (to_chrome_r, from_chrome_w))
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={self.profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   "--hide-scrollbars", "--remote-debugging-pipe", "about:blank"]
        wrapper = f'exec 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-; exec "$@"'
        self.process = subprocess.Popen(["bash", "-c", wrapper, "chromium"] + command,
                                        pass_fds=(to_chrome_r, from_chrome_w),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False}, session=True)

    @staticmethod
    def _above_nine(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return moved

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (did it start?)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 60) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            self.events.append(self._read_message(deadline))

    def load(self, url: str) -> dict:
        """Navigate, wait for the load event, and return the page facts."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for_event("Page.loadEventFired")
        result = self.call("Runtime.evaluate", {"expression": PAGE_FACTS_JS, "returnByValue": True}, session=True)
        return result["result"]["value"]

    def screenshot(self, path: Path) -> None:
        """The whole page at the window's width, as PNG."""
        metrics = self.call("Page.getLayoutMetrics", session=True)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": WINDOW[0], "height": min(int(size["height"]), 16000), "scale": 1}
        shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        for fd in (self.to_chrome, self.from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def page_problems(facts: dict, expected_title: str, expected_nav: list[tuple[str, str]]) -> list[str]:
    """What a rendered page breaks: title, nav, images, .md links, code wider than the column."""
    problems = []
    if facts["title"] != expected_title or facts["h1"] != expected_title:
        problems.append(f"title {facts['title']!r} / heading {facts['h1']!r}, expected {expected_title!r}")
    nav = [tuple(entry) for entry in facts["nav"]]
    if nav != expected_nav:
        problems.append(f"nav {nav} is not the learning-path pages in order {expected_nav}")
    problems += [f"image {src} did not load" for src, loaded in facts["images"] if not loaded]
    problems += [f"link to a .md file: {href}" for href in facts["links"]
                 if re.search(r"\.md($|#)", href) and not href.startswith("http")]
    problems += [f"code block wider than the {CONTENT_WIDTH_PX} px column: {first!r}" for first in facts["wide_code"]]
    return problems
