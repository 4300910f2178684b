#!/usr/bin/env bash
# Install what tests/e2e/test_browser.py and tests/e2e/test_deploy_files.py drive, when missing:
# Debian's chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and docker-compose
# (its `config` command validates docker-compose.yml without a Docker engine).
# The test tools' own browser downloads do not work on CI; Debian's packages do. Needs root.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "browser and docker-compose already installed"
  exit 0
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
docker-compose version --short
