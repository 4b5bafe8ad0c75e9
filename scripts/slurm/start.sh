#!/usr/bin/env bash
# Start a one-node Slurm cluster with accounting on this machine, without systemd (as root):
# munged, MariaDB, slurmdbd, slurmctld, slurmd, each started here in the foreground mode of its
# daemon and put in the background, their pids kept in $STATE/pids for stop.sh.
#   scripts/slurm/install.sh && scripts/slurm/start.sh      partitions: low (default,
#   preemptable: requeued when a job of `high` needs its CPUs) and high
# State (databases, spool, logs) lives in $BLAQ_SLURM_STATE (default /var/tmp/blaq-slurm); the
# configuration is written to /etc/slurm/ (a slurm.conf not written by this script is refused).
# Idempotent: a running cluster is left as it is; after an unclean stop (a pid file whose
# processes are gone) the leftovers are stopped and the state is wiped before starting afresh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${BLAQ_SLURM_STATE:-/var/tmp/blaq-slurm}"
CONF_DIR=/etc/slurm
MARK="blaq-one-node-cluster"
CTLD_PORT="${BLAQ_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${BLAQ_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${BLAQ_SLURM_DBD_PORT:-6819}"
DB_PORT="${BLAQ_SLURM_DB_PORT:-3306}"
TIMEOUT=120   # seconds any one daemon may take to come up (only bounds a hang)

say() { echo "start.sh: $*"; }
die() { echo "start.sh: error: $*" >&2; exit 1; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
wait_for() {  # wait_for WHAT COMMAND...: until COMMAND succeeds, at most $TIMEOUT s
    local what="$1"; shift
    local t=0
    until "$@" >/dev/null 2>&1; do
        alive "$LAST_PID" || die "$what exited while starting (see $STATE/*.out and *.log)"
        t=$((t + 1))
        [ "$t" -le $((TIMEOUT * 2)) ] || die "$what did not come up in $TIMEOUT s (logs in $STATE)"
        sleep 0.5
    done
}
start_bg() {  # start_bg NAME COMMAND...: own session, output to $STATE/NAME.out; prints the pid
    local name="$1"; shift
    setsid "$@" >"$STATE/$name.out" 2>&1 </dev/null &
    LAST_PID=$!
    echo "$name $LAST_PID" >>"$STATE/pids"
}
LAST_PID=""

[ "$(id -u)" = 0 ] || die "needs root"
for b in munged mariadbd slurmdbd slurmctld slurmd sacctmgr sinfo; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found; run $HERE/install.sh first"
done
export PATH="$PATH:/usr/sbin:/sbin"

if [ -f "$STATE/pids" ]; then
    all=1
    while read -r name pid; do alive "$pid" || all=0; done <"$STATE/pids"
    if [ "$all" = 1 ] && scontrol ping >/dev/null 2>&1; then
        say "already running (pids in $STATE/pids)"
        exit 0
    fi
    say "unclean stop found: stopping what is left and wiping the state"
    "$HERE/stop.sh" --wipe >/dev/null 2>&1 || true
    rm -rf "$STATE"
fi
for f in slurm.conf slurmdbd.conf; do
    if [ -f "$CONF_DIR/$f" ] && ! grep -q "$MARK" "$CONF_DIR/$f"; then
        die "$CONF_DIR/$f exists and was not written by this script; move it away first"
    fi
done

mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/mysql"
chmod 755 "$STATE"
: >"$STATE/pids"
HOST="$(hostname -s)"
# the node as slurmd sees it; memory a little below the real one (more than there is drains it)
NODE="$(slurmd -C | head -1)"
REAL="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE")"
CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODE")"
MEM=$((REAL * 95 / 100))
NODE="$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$NODE")"
MEM_PER_CPU=$((MEM / CPUS / 2))
DB_PASS="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$CONF_DIR"
sub() {
    sed -e "s|@HOST@|$HOST|g; s|@SHORT@|$HOST|g; s|@STATE@|$STATE|g; s|@NODE@|$NODE|g" \
        -e "s|@MEM_PER_CPU@|$MEM_PER_CPU|g; s|@CTLD_PORT@|$CTLD_PORT|g; s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g; s|@DB_PORT@|$DB_PORT|g; s|@DB_PASS@|$DB_PASS|g" "$1"
}
sub "$HERE/slurm.conf.in" >"$CONF_DIR/slurm.conf"
sub "$HERE/slurmdbd.conf.in" >"$CONF_DIR/slurmdbd.conf"
chmod 600 "$CONF_DIR/slurmdbd.conf"

# munge: the authentication of every Slurm message (one daemon per machine: reuse a running one)
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key; }
    # setpriv execs munged as the munge user (runuser would fork, and its pid would not be munged's)
    start_bg munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground
    wait_for munged sh -c 'munge -n | unmunge'
fi

# MariaDB: the accounting database, on 127.0.0.1 only
chown mysql:mysql "$STATE/mysql"
if [ ! -d "$STATE/mysql/mysql" ]; then  # a clean stop keeps the database: install it once
    mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
        --auth-root-authentication-method=socket >"$STATE/mariadb-install.out" 2>&1 \
        || die "mariadb-install-db failed (see $STATE/mariadb-install.out)"
fi
start_bg mariadbd mariadbd --user=mysql --datadir="$STATE/mysql" --socket="$STATE/mysql/mysqld.sock" \
    --pid-file="$STATE/mysql/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-log-bin \
    --innodb-buffer-pool-size=64M
wait_for MariaDB mariadb --socket="$STATE/mysql/mysqld.sock" -e "select 1"
mariadb --socket="$STATE/mysql/mysqld.sock" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

start_bg slurmdbd slurmdbd -D
wait_for slurmdbd sacctmgr -n list cluster
sacctmgr -n list cluster format=cluster | grep -qw blaq || sacctmgr -i add cluster blaq >/dev/null
start_bg slurmctld slurmctld -D -i
wait_for slurmctld scontrol ping
start_bg slurmd slurmd -D
node_ready() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)'; }
wait_for "node $HOST" node_ready
say "cluster up: node $HOST ($CPUS CPUs, $MEM MB, $MEM_PER_CPU MB per CPU by default), partitions low (default, preemptable) and high; state in $STATE"
