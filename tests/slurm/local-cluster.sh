#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm test layer (tests/test_slurm_grid.py):
#   tests/slurm/local-cluster.sh start    install slurm-wlm and munge if missing (apt-get; as root), write the
#                                         configuration for this host in LSKD_SLURM_DIR, start munged, slurmctld
#                                         and slurmd, wait until the node takes jobs, and print the two exports
#                                         that point the clients and the tests at it
#   tests/slurm/local-cluster.sh status   whether its daemons run
#   tests/slurm/local-cluster.sh stop     end exactly the daemons start started, by their pid files
# No accounting (no slurmdbd): sacct answers that accounting storage is disabled, as on many clusters.
set -euo pipefail
DIR="${LSKD_SLURM_DIR:-/tmp/lskd-slurm}"
DAEMONS=(munged slurmctld slurmd)

fail() { echo "local-cluster.sh: error: $*" >&2; exit 2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then return; fi
    [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are not installed and this is not root (expected: sudo $0 start)"
    command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and there is no apt-get (expected a Debian or Ubuntu host)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$DIR/apt.log" 2>&1 ||
        { apt-get update -q >>"$DIR/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >>"$DIR/apt.log" 2>&1; } ||
        fail "apt-get install slurm-wlm munge failed (log: $DIR/apt.log)"
}

configure() {
    local host cpus memory
    host="$(hostname -s)"
    cpus="$(nproc)"
    memory="$(awk '/MemAvailable/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
    chmod 700 "$DIR/munge"
    if [ ! -f "$DIR/munge/munge.key" ]; then
        head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
        chmod 400 "$DIR/munge/munge.key"
    fi
    cat >"$DIR/slurm.conf" <<CONF
ClusterName=lskd-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${LSKD_SLURM_PORT:-6817}
SlurmdPort=$((${LSKD_SLURM_PORT:-6817} + 1))
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

running() {  # DAEMON: its pid file names a live process
    local pid
    pid="$(cat "$DIR/$1.pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start() {
    mkdir -p "$DIR"
    install
    if running slurmctld && running slurmd; then
        echo "export SLURM_CONF=$DIR/slurm.conf LSKD_SLURM_CONF=$DIR/slurm.conf"
        return
    fi
    configure
    export SLURM_CONF="$DIR/slurm.conf"
    running munged || munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munged.seed"
    running slurmctld || slurmctld -f "$SLURM_CONF"
    running slurmd || slurmd -f "$SLURM_CONF"
    local _
    for _ in $(seq 100); do
        if sinfo --noheader --states=idle,mixed,allocated --format=%n 2>/dev/null | grep -q .; then
            echo "export SLURM_CONF=$DIR/slurm.conf LSKD_SLURM_CONF=$DIR/slurm.conf"
            return
        fi
        sleep 0.2
    done
    fail "the node did not come up in 20 s (logs: $DIR/slurmctld.log, $DIR/slurmd.log)"
}

stop() {
    local daemon pid _
    for daemon in slurmd slurmctld munged; do
        if running "$daemon"; then
            pid="$(cat "$DIR/$daemon.pid")"
            kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$DIR/$daemon.pid"
    done
}

status() {
    local daemon state=0
    for daemon in "${DAEMONS[@]}"; do
        if running "$daemon"; then echo "$daemon: running, pid $(cat "$DIR/$daemon.pid")"; else echo "$daemon: stopped"; state=3; fi
    done
    return "$state"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) fail "expected start, stop or status (got '${1:-}')" ;;
esac
