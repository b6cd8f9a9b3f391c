#!/usr/bin/env bash
# The API reference, built from the docstrings into docs/api/ (HTML, not committed):
#   .venv/bin/pip install -c constraints.txt -e ".[docs]" && bash docs/build_api.sh
# Every module is named: pdoc follows only the submodules a package lists in __all__.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
modules=$("$PY" -c "import pkgutil, neuralgraph as a, dws_equiv as b; print('neuralgraph dws_equiv', *(m.name for p in (a, b) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') if not m.name.endswith('__main__')))")
"$PY" -m pdoc -d google -o docs/api $modules
echo "open docs/api/index.html"
