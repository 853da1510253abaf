#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# apt-get update runs once, and only when something is missing.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
# Debian's postgresql package would create and start a cluster of its own on port 5432; the
# tests start a throwaway one (scripts/with-postgres.sh), so ask for none.
if [[ " ${missing[*]} " == *" postgresql"* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
apt-get update -qq
# The tests run Debian's prometheus and promtool binaries on a config of their own, never its
# service; without its recommends, which would add prometheus-node-exporter, another service.
rest=()
for pkg in "${missing[@]}"; do [ "$pkg" = prometheus ] || rest+=("$pkg"); done
[ ${#rest[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${rest[@]}"
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
