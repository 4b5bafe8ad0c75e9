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
# the package scripts try to start services; without systemd they cannot, and must not fail
apt-get install -y -q --no-install-recommends "${missing[@]}" || {
    apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
}
echo "install.sh: installed ${missing[*]}"
