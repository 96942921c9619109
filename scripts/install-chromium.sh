#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test suite (tests/browser.test.ts drives it headless
# with playwright-core, which never downloads a browser; WebGPU runs on Chromium's SwiftShader).
# Idempotent; needs root (sudo bash scripts/install-chromium.sh).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed ($(chromium --version 2>/dev/null || echo 'version unknown'))"; exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium.sh: needs Debian (apt-get). Elsewhere install Chromium and set KILN_CHROMIUM to its path." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium.sh: needs root: sudo bash $0" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "installed: chromium $(dpkg-query -W -f='${Version}' chromium)"
