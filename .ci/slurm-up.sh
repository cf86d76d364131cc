#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine for the SLURM integration test
# (tests/test_slurm.py) and CI.
#
# What it does (every step is idempotent; rerunning it on a running cluster is a no-op):
#   1. installs Debian's slurmctld, slurmd, slurm-client and munge when they are missing;
#   2. starts munged and checks that a credential round-trips;
#   3. writes /etc/slurm/slurm.conf for this host: NodeName=$(hostname -s) with the CPU and
#      memory layout `slurmd -C` reports, one default partition `debug`, select/cons_tres,
#      and no cgroup plugins (proctrack/linuxproc, task/none), which also work in containers;
#   4. starts slurmctld and slurmd and waits until `sinfo` shows the node idle.
#
# GPUs: rules that declare `gpu=1` are submitted with `--gpus=1`, which SLURM rejects on a
# node without GPU gres. So the node always advertises GPUs: the real ones (/dev/nvidiaN)
# where there are any, else UVLM_SLURM_FAKE_GPUS count-only gres (default: one per CPU, as
# the local profile allows one model job per core on a CPU-only machine) that bind no
# device, so GPU-declaring jobs run side by side on the CPUs. That is what lets CI run the
# GPU rules through SLURM on a CPU-only machine in about the time of a local run.
#
# No accounting database: AccountingStorageType=accounting_storage/none, so `sacct` has
# nothing to report; the Snakemake SLURM plugin then polls with `squeue`, which needs
# MinJobAge (how long finished jobs stay visible) well above its polling interval.
#
# Exit status: 0 when the node is idle; non-zero with a one-line "slurm-up: FAILED: <reason>"
# (plus the daemon log tail) otherwise. Needs root (or passwordless sudo).
#
# Environment:
#   UVLM_SLURM_FAKE_GPUS  count-only GPUs to advertise when the host has none (default nproc)
#   UVLM_SLURM_TIMEOUT    seconds to wait for the node to become idle (default 60)
set -euo pipefail

FAKE_GPUS="${UVLM_SLURM_FAKE_GPUS:-$(nproc)}"
TIMEOUT="${UVLM_SLURM_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
started=$(date +%s)

fail() {
    echo "slurm-up: FAILED: $*" >&2
    for log in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [ -s "$log" ]; then
            echo "--- last lines of $log" >&2
            tail -n 15 "$log" >&2
        fi
    done
    exit 1
}
say() { echo "slurm-up: $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        fail "needs root or passwordless sudo (to install packages and start the daemons)"
    fi
fi

# ---------------------------------------------------------------- 1. packages
need=()
for bin in slurmctld slurmd sinfo sbatch munged; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || need+=("$bin")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get to install them"
    say "installing slurmctld slurmd slurm-client munge (missing: ${need[*]})"
    $SUDO apt-get update -q >/dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null || fail "apt-get install failed"
fi
export PATH="$PATH:/usr/sbin"

host=$(hostname -s)

shopt -s nullglob
gpu_devs=(/dev/nvidia[0-9]*)
shopt -u nullglob
if [ "${#gpu_devs[@]}" -gt 0 ]; then n_gpus=${#gpu_devs[@]}; else n_gpus=$FAKE_GPUS; fi

# A cluster that is already up with our config and GPU count is left alone.
if [ -f "$CONF_DIR/slurm.conf" ] && grep -q '^# written by .ci/slurm-up.sh' "$CONF_DIR/slurm.conf" \
    && sinfo -h -n "$host" -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' \
    && [ "$(sinfo -h -n "$host" -o '%G' 2>/dev/null)" = "gpu:$n_gpus" ]; then
    say "already up: $(sinfo -h -o '%P %D %t %N' | tr '\n' ' ')"
    exit 0
fi

# ---------------------------------------------------------------- 2. munge
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
$SUDO chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null || [ -x /usr/sbin/mungekey ]; then
        $SUDO /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    else
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    $SUDO runuser -u munge -- /usr/sbin/munged --force \
        || fail "munged did not start"
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.25
    done
    munge -n | unmunge >/dev/null 2>&1 || fail "munge credential does not round-trip"
fi

# ---------------------------------------------------------------- 3. slurm.conf
# `slurmd -C` prints the node's real layout, e.g.
#   NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
node_line=$(slurmd -C 2>/dev/null | head -n 1) || fail "slurmd -C failed"
case "$node_line" in NodeName=*) ;; *) fail "unexpected slurmd -C output: $node_line" ;; esac
real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
# Keep 10% of the memory for the daemons and the Snakemake head process.
usable_mem=$((real_mem * 9 / 10))
node_line=$(sed -e "s/^NodeName=[^ ]*/NodeName=$host/" \
    -e "s/RealMemory=[0-9]*/RealMemory=$usable_mem/" <<<"$node_line")

if [ "${#gpu_devs[@]}" -gt 0 ]; then
    gres_line="NodeName=$host Name=gpu File=/dev/nvidia[0-$((n_gpus - 1))]"
    gpu_note="$n_gpus real GPU(s)"
else
    # slurmd drops GPUs without a device file ("Removing file-less GPU"), so each fake GPU
    # is a clone of /dev/null (char 1,3); a plain file also works, with an error in the log.
    fake_dir=/run/uvlm-fake-gpu
    $SUDO mkdir -p "$fake_dir"
    for i in $(seq 0 $((n_gpus - 1))); do
        [ -e "$fake_dir/gpu$i" ] || $SUDO mknod "$fake_dir/gpu$i" c 1 3 2>/dev/null \
            || $SUDO touch "$fake_dir/gpu$i"
    done
    gres_line="NodeName=$host Name=gpu File=$fake_dir/gpu[0-$((n_gpus - 1))]"
    gpu_note="$n_gpus fake GPU(s) without a device: GPU jobs run on the CPU"
fi
gres_node=""
if [ "$n_gpus" -gt 0 ]; then gres_node="Gres=gpu:$n_gpus"; else gres_line=""; fi

$SUDO mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
$SUDO chown slurm:slurm "$LOG_DIR" "$STATE_DIR/slurmctld"

$SUDO tee "$CONF_DIR/slurm.conf" >/dev/null <<EOF
# written by .ci/slurm-up.sh: a one-node test cluster on $host
ClusterName=uvlm
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: they are often not writable in containers and a test cluster needs no limits.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct has nothing to report; job state comes from squeue.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 10 minutes: the Snakemake SLURM plugin polls with
# squeue when sacct has no data and needs MinJobAge above 3x its first-poll interval.
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
SwitchType=switch/none
$node_line $gres_node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
echo "$gres_line" | $SUDO tee "$CONF_DIR/gres.conf" >/dev/null
# Debian's slurmd also reads cgroup.conf when present; none is needed with these plugins.

# ---------------------------------------------------------------- 4. daemons
# Only daemons this script started (pid files under /run) are restarted to load the config.
for daemon in slurmctld slurmd; do
    pidfile=/run/$daemon.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        say "restarting $daemon (pid $(cat "$pidfile")) to load the new config"
        $SUDO kill "$(cat "$pidfile")"
        for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile" 2>/dev/null || echo 0)" 2>/dev/null || break; sleep 0.25; done
    fi
done
say "starting slurmctld"
$SUDO /usr/sbin/slurmctld || fail "slurmctld did not start"
for _ in $(seq 1 40); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.25; done
scontrol ping 2>/dev/null | grep -q UP || fail "slurmctld does not answer scontrol ping"
say "starting slurmd"
$SUDO /usr/sbin/slurmd || fail "slurmd did not start"

deadline=$(($(date +%s) + TIMEOUT))
state=""
while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -n "$host" -o '%t' 2>/dev/null | head -n 1)
    case "$state" in
        idle) break ;;
        inval*) fail "slurmctld rejected node $host: $(sinfo -h -R -o '%E' 2>/dev/null)" ;;
        down* | drain* | fail*)
            # A node left down by an earlier config is resumed once.
            $SUDO scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
[ "$state" = idle ] || fail "node $host is '${state:-absent}' after ${TIMEOUT}s, not idle ($(sinfo -h -R 2>/dev/null | tr '\n' ' '))"
say "up in $(($(date +%s) - started))s: partition debug, node $host ($node_line), $gpu_note"
sinfo
