#!/usr/bin/env bash
# Install everything the test suite needs, then run it. The README's test command; .ci/run calls it.
#   - Debian packages: PostgreSQL server (tests start a throwaway cluster on 127.0.0.1) and Chromium
#     (the dashboard screenshot test), installed with apt-get when missing and when running as root;
#   - Python packages: this project with its [test] extra (pytest, PostgreSQL driver, Dask);
#   - pytest over tests/ in two test processes (pytest-xdist: while one test waits on its sweep's
#     worker processes the other core runs another test), failing when no test ran (exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null >/dev/null
  else
    echo "warning: missing ${need_apt[*]} and cannot apt-get install; the tests that need them will be skipped" >&2
  fi
fi

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]" </dev/null

set +e
python3 -m pytest --numprocesses 2 "$@" </dev/null
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
