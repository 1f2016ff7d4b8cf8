#!/usr/bin/env bash
# Check that the dependency floors in pyproject.toml are true: install this project into a clean,
# throwaway virtual environment with every declared dependency pinned to its lowest allowed version
# (each "name>=X" of [project].dependencies and of the optional extras becomes "name==X": optuna,
# optuna-dashboard, pandas, numpy, keras, tensorflow-cpu, ...), print what was installed, then run
# the fast tests there (no end-to-end training, no PostgreSQL, no Chromium).
#
#   bash scripts/check_floors.sh                 # the fast tests: -m "not slow and not postgres and not browser"
#   bash scripts/check_floors.sh tests/test_x.py # any pytest arguments instead
#
# The environment is a plain `python3 -m venv` (no --system-site-packages, so nothing newer leaks in)
# under a temporary folder that is removed on exit. Exit code: pytest's (1 when no test ran).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/regsweep-floors.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# "name>=X" -> "name==X" for every floor in pyproject.toml (extras' brackets dropped: a constraint
# names a distribution, not its extras).
python3 - "$root/pyproject.toml" >"$work/floors.txt" <<'EOF'
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
for name, floor in re.findall(r'"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;"\s]*)', text):
    if name.lower() not in {"setuptools"}:  # the build backend is not a dependency
        print(f"{name}=={floor}")
EOF
echo "floors (from pyproject.toml):"
sed 's/^/  /' "$work/floors.txt"

python3 -m venv "$work/venv"
py="$work/venv/bin/python"
echo "installing into a clean venv (pip's output: shown only on failure)..."
if ! { "$py" -m pip install --disable-pip-version-check --upgrade pip \
       && "$py" -m pip install --disable-pip-version-check -c "$work/floors.txt" -e "$root[test]"; } \
     >"$work/pip.log" 2>&1 </dev/null; then
  grep -v "^WARNING: Location" "$work/pip.log" | tail -40 >&2
  echo "floors: FAILED to install" >&2
  exit 1
fi

echo "installed:"
names="$(cut -d= -f1 "$work/floors.txt" | tr '\n' ' ')"
"$py" - $names <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for name in sys.argv[1:]:
    try:
        print(f"  {name} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name} (not installed)")
EOF

if [ $# -eq 0 ]; then
  set -- -m "not slow and not postgres and not browser"
fi
set +e
# PYTHONPATH: processes the tests start import this checkout's regsweep, like the editable install.
PYTHONPATH="$root" "$py" -m pytest -q -p no:cacheprovider "$@" </dev/null
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
[ "$status" = 0 ] && echo "floors: OK" || echo "floors: FAILED (pytest exit code $status)" >&2
exit "$status"
