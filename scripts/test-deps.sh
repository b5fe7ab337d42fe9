#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: redis-server (Debian package, as root).
# Elsewhere it says exactly what to install and fails.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]}; install with: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi
