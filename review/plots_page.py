"""An HTML template for ``dvc plots show`` with vega, vega-lite and vega-embed inside it.

DVC's own page loads the three scripts from a CDN, so without internet its charts stay
empty. ``make plots-page`` fetches the npm packages at the versions the Makefile pins
(``npm pack``, which checks each tarball against the registry's integrity hash), and this
module writes the page with each minified build and its licence inlined:

    python -m review.plots_page --packages build/npm --out build/plots/page.html

The page has DVC's ``{plot_divs}`` placeholder and no ``{scripts}`` one, so DVC adds no CDN
tags (``dvc_render.html``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.atomic import atomic_open
from digits.runtime.stopping import run_stage

# npm package -> its browser build, in load order (vega-lite and vega-embed need vega).
BUILDS = {
    "vega": "package/build/vega.min.js",
    "vega-lite": "package/build/vega-lite.min.js",
    "vega-embed": "package/build/vega-embed.min.js",
}

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>DVC plots</title>
{scripts_inline}
  <style>
    body {{ font-family: sans-serif; }}
    table {{ border-spacing: 15px; }}
  </style>
</head>
<body>
  {{plot_divs}}
</body>
</html>
"""


def read_package(tarball: Path, build: str) -> tuple[dict, str, str]:
    """(package.json, licence text or "", minified build) from an ``npm pack`` tarball."""
    with tarfile.open(tarball) as archive:
        names = archive.getnames()

        def text(name: str) -> str:
            member = archive.extractfile(name)
            if member is None:
                raise PipelineError(f"{tarball}: {name} is not a file")
            return member.read().decode("utf-8")

        manifest = json.loads(text("package/package.json"))
        licence = next((text(n) for n in names if n.upper().startswith("PACKAGE/LICENSE")), "")
        if build not in names:
            raise PipelineError(f"{tarball} has no {build}: is it the npm package?")
        return manifest, licence, text(build)


def script_tag(manifest: dict, licence: str, code: str) -> str:
    """One inline <script>, its package, version and licence in a comment before it."""
    notice = licence.strip() or f"Licence: {manifest.get('license', 'see the package')}"
    header = (
        f"{manifest['name']} {manifest['version']} ({manifest.get('license', '')}), "
        f"{manifest.get('homepage', '')}\n{notice}"
    )
    # Nothing inside a script may close it early.
    safe = code.replace("</script", "<\\/script")
    return f"  <!--\n{header.replace('--', '- -')}\n  -->\n  <script>{safe}</script>"


def page(packages: Path) -> str:
    """The template, from the ``<name>-<version>.tgz`` files of ``npm pack`` in ``packages``."""
    tags = []
    for name, build in BUILDS.items():
        found = sorted(packages.glob(f"{name}-[0-9]*.tgz"))
        if len(found) != 1:
            raise PipelineError(
                f"expected one {name}-<version>.tgz in {packages}, found {len(found)}: "
                "run `make plots-page`"
            )
        tags.append(script_tag(*read_package(found[0], build)))
    return PAGE.format(scripts_inline="\n".join(tags))


def main(argv: list[str] | None = None) -> None:
    """Write the page built from ``--packages`` to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--packages", type=Path, required=True, help="folder of the npm pack tarballs"
    )
    parser.add_argument("--out", type=Path, required=True, help="the HTML template to write")
    args = parser.parse_args(argv)
    html = page(args.packages)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out) as stream:
        stream.write(html)
    print(f"{args.out}: {len(html) // 1024} KiB, {', '.join(BUILDS)} inlined")


if __name__ == "__main__":
    sys.exit(run_stage(main))
