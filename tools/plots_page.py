"""Write the HTML template that `dvc plots show` fills (`plots.html_template` in .dvc/config).

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so without internet every vega plot
stays blank. `make install` installs the same three versions from npm and runs

    python tools/plots_page.py --packages                          # the npm specs DVC's page loads
    python tools/plots_page.py --modules build/plots/node_modules build/plots/page.html

which writes DVC's page with the three minified libraries inlined: the dvc_plots/index.html made
from it draws offline, wherever it is opened or copied. Without --modules it writes DVC's page
unchanged (CDN scripts): the configured template must exist, because DVC stops with "HTML template
has to contain '{plot_divs}'" when it does not.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer

CDN = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/([a-z-]+)@([0-9.]+)"')


def dvc_packages():
    """[(name, version)] of the scripts DVC's page loads, in its order (vega before vega-lite before vega-embed)."""
    packages = CDN.findall(VegaRenderer.SCRIPTS)
    if not packages:
        raise ValueError(
            "no CDN script found in dvc_render's VegaRenderer.SCRIPTS: its page changed, update tools/plots_page.py"
        )
    return packages


def inline_script(modules, name, version):
    """The <script> element holding the file the CDN serves for name@version, read from node_modules."""
    package_dir = Path(modules) / name
    try:
        meta = json.loads((package_dir / "package.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {package_dir / 'package.json'} ({exc}): run `make install`") from None
    if meta.get("version") != version:
        raise ValueError(
            f"{package_dir} holds {name} {meta.get('version')}, DVC's page loads {version}: run `make install`"
        )
    # jsdelivr serves a bare npm/name@version URL from the package's "jsdelivr" file
    code = (package_dir / meta.get("jsdelivr", meta.get("unpkg", meta.get("main")))).read_text(encoding="utf-8")
    code = re.sub(r"^//# sourceMappingURL=.*$", "", code, flags=re.M)  # the .map files are not inlined
    if "</script" in code.lower():
        raise ValueError(f"{name} contains '</script', which would end its inline <script> element early")
    return f'<script type="text/javascript">/* {name}@{version} from npm */\n{code}\n</script>'


def page(modules=None):
    if modules is None:
        return PAGE_HTML  # DVC's own, scripts from the CDN
    scripts = "\n".join(inline_script(modules, name, version) for name, version in dvc_packages())
    # no {scripts} placeholder left: DVC would add its CDN <script> tags there
    return PAGE_HTML.replace("{scripts}", scripts)


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # DVC never reads a half-written template


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="the template to write")
    parser.add_argument(
        "--modules", help="node_modules folder holding vega, vega-lite and vega-embed (else DVC's CDN page)"
    )
    parser.add_argument(
        "--packages", action="store_true", help="print the npm specs of the scripts DVC's page loads, and exit"
    )
    args = parser.parse_args(argv)
    try:
        if args.packages:
            print(" ".join(f"{name}@{version}" for name, version in dvc_packages()))
            return 0
        if not args.out:
            parser.error("give the template to write, or --packages")
        write_atomic(args.out, page(args.modules))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
