#!/usr/bin/env bash
# Stop the one-node cluster that start.sh started: cancel its jobs first (jobs outlive a stopped
# slurmd), then stop the daemons by the pids start.sh recorded. --wipe also removes the state.
set -uo pipefail
STATE="${BLAQ_SLURM_STATE:-/var/tmp/blaq-slurm}"
export PATH="$PATH:/usr/sbin:/sbin"
say() { echo "stop.sh: $*"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
if [ ! -f "$STATE/pids" ]; then
    say "not running (no $STATE/pids)"
    [ "${1:-}" = --wipe ] && rm -rf "$STATE"
    exit 0
fi
if scontrol ping >/dev/null 2>&1; then
    jobs="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// }" ]; then
        say "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 120); do  # wait until they are gone (bounds a hang only)
            [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi
stop_pid() {
    local name="$1" pid="$2"
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 60); do alive "$pid" || return 0; sleep 0.5; done
    say "$name ($pid) did not stop on SIGTERM: killing it"
    kill -KILL "$pid" 2>/dev/null
}
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pid="$(awk -v n="$name" '$1 == n {print $2}' "$STATE/pids")"
    [ -n "$pid" ] && stop_pid "$name" "$pid"
done
rm -f "$STATE/pids"
if [ "${1:-}" = --wipe ]; then rm -rf "$STATE"; fi
say "stopped"
