#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them (CPU only; GPU tests skip).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m gpu` on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# kubectl renders the manifests; in CI their tests must not quietly skip.
if [ "${CI:-}" = true ] && ! command -v kubectl >/dev/null; then
  echo "kubectl is required in CI (tests/test_manifests.py renders every kustomization)" >&2
  exit 1
fi
# A real browser for the report tests (Debian packages).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium/chromedriver missing: the browser test will be skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch==2.13.0 first and exactly: a looser range would pull gigabytes of CUDA wheels.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e '.[test]'
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
