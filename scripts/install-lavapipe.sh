#!/usr/bin/env bash
# Installs Mesa's lavapipe (a Vulkan driver that runs on the CPU) so that the
# `webgpu` npm package (Dawn) finds an adapter on a machine without a GPU.
# On Debian bookworm it comes from bookworm-backports (Mesa 25): bookworm's own
# Mesa 22 is too old for Dawn. On newer Debian releases the release's own
# mesa-vulkan-drivers is recent enough.
# Idempotent; needs root (sudo bash scripts/install-lavapipe.sh). Uses the same
# mirror as the machine's existing apt sources.
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-lavapipe.sh: needs Debian (apt-get). Elsewhere install your distribution's Mesa Vulkan drivers (lavapipe, Mesa >= 24)." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-lavapipe.sh: needs root: sudo bash $0" >&2
  exit 1
fi

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")

if [ "$codename" != bookworm ]; then
  if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    echo "lavapipe already installed"; exit 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  echo "installed: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
  exit 0
fi

if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 &&
   dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q bpo; then
  echo "lavapipe from backports already installed"; exit 0
fi
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' "$src")
else
  uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
fi
cat > /etc/apt/sources.list.d/kiln-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
echo "installed: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
