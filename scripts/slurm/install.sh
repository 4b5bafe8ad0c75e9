#!/usr/bin/env bash
# Install what a one-node Slurm cluster with accounting needs (Debian/Ubuntu, as root):
# munge, slurmctld, slurmd, the client tools, slurmdbd and MariaDB (submitit reads job states
# from sacct, which needs accounting). Idempotent: installed packages are left as they are.
set -euo pipefail
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
if [ "$(id -u)" != 0 ]; then
    echo "install.sh: needs root (apt-get)" >&2
    exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: all installed (${PACKAGES[*]})"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# The package scripts must not start the services: without systemd they fall back to the
# init.d scripts, and a system MariaDB or munged started there would hold the port and the
# socket that start.sh gives its own daemons. policy-rc.d (exit 101) forbids it for the install.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -q --no-install-recommends "${missing[@]}" || {
    apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
}
echo "install.sh: installed ${missing[*]}"
