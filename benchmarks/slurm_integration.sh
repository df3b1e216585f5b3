#!/usr/bin/env bash
# Slurm, proven: the workflow through profiles/slurm on a one-node cluster,
# every result compared with a local run.
#
#   make slurm-check                        # or: sudo benchmarks/slurm_integration.sh
#
# Needs root on a Debian 12 machine (a container will do: no systemd, no
# cgroups needed) with the repository's .venv (make install). It
#
# 1. installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server with
#    apt-get when they are missing (services are not started by the
#    packages: a policy-rc.d that denies it is put in place for the install
#    when the machine has none, and removed afterwards);
# 2. writes slurm.conf, slurmdbd.conf and cgroup.conf into a new temporary
#    directory and exports SLURM_CONF (sbatch, sacct, the daemons), and links
#    /etc/slurm/slurm.conf to it for the length of the run, for the srun in
#    each job step (the jobstep plugin drops SLURM_CONF); it stops if that
#    file exists already, and removes only its own link;
# 3. starts mariadbd, munged, slurmdbd, slurmctld and slurmd on loopback
#    (their own ports, sockets and state under that directory), each in the
#    foreground of a background job whose PID is recorded, registers the
#    cluster and an account, and waits until sinfo shows the node idle;
# 4. snapshots the working tree (so edits during the run change nothing) and
#    runs each tiny study of .test/ twice, locally (--cores 2) and through
#    --profile profiles/slurm, into two working directories; the last study
#    sets account and partition as the README tells a real cluster's user;
# 5. compares every result and generated input of the two runs
#    (benchmarks/compare_runs.py), checks in sacct where each job ran and
#    that no sbatch call asked for a GPU (the tiny studies say device: cpu);
# 6. on exit, whatever happened, cancels the cluster's jobs, stops each
#    daemon it started by its PID (TERM, then KILL after 30 s) and removes
#    the link; the work directory (logs, runs) is kept.
#
# Exit status 0 only when every Slurm job completed and every compared file
# is the same. Settings (environment):
#   SLURM_CHECK_CONFIGS  studies of .test/ to run (default: "tiny_virtual tiny_samples")
#   SLURM_CHECK_DIR      the work directory (default: a new /tmp/microprop-slurm.XXXXXX)
#   SLURM_CHECK_PORT     first of the five loopback ports used (default 16817)
#   PYTHON               the interpreter with snakemake (default: .venv/bin/python)
set -Eeuo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
read -r -a STUDIES <<<"${SLURM_CHECK_CONFIGS:-tiny_virtual tiny_samples}"
PORT=${SLURM_CHECK_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
CLUSTER=microprop
ACCOUNT=microprop          # the account the last study names explicitly
NAMED_PARTITION=named      # the partition it names (the default one is "main")
NODE=$(hostname -s)
START=$SECONDS

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the daemons and apt-get need it)"
[[ -x $PY ]] || die "$PY not found: run 'make install' first"
for s in "${STUDIES[@]}"; do
    [[ -f $REPO/.test/config_$s/config.yaml ]] || die "no study .test/config_$s/config.yaml"
done

# ------------------------------------------------------------------ 1. packages
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get, noninteractive)"
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
else
    say "packages present: ${PACKAGES[*]}"
fi
say "slurm $(slurmctld -V | awk '{print $2}'), munge $(munged -V | awk '{print $1}' | cut -d- -f2), $(mariadbd --version | awk '{print $2, $3}')"

for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p on 127.0.0.1 is in use (a previous check still running? its PIDs are in /tmp/microprop-slurm.*/run/*.pid); set SLURM_CHECK_PORT"
    fi
done

# ------------------------------------------------------------------ 2. configuration
WORK=${SLURM_CHECK_DIR:-$(mktemp -d /tmp/microprop-slurm.XXXXXX)}
mkdir -p "$WORK"/{etc,run,log,db,state/ctld,state/d,runs}
chmod 700 "$WORK"
ETC=$WORK/etc RUN=$WORK/run LOG=$WORK/log
say "work directory $WORK"

dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none
chmod 400 "$ETC/munge.key"
# munged on its default socket: Slurm's clients (sacctmgr's connection to
# slurmdbd among them) do not all honour AuthInfo=socket=...
MUNGE_SOCKET=/run/munge/munge.socket.2
DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# the node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory)
NODE_HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //; s/ *UpTime=.*//')

cat >"$ETC/slurm.conf" <<EOF
# One-node cluster on loopback for benchmarks/slurm_integration.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$WORK/state/ctld
SlurmdSpoolDir=$WORK/state/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups and no systemd in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
InactiveLimit=0
KillWait=30
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $NODE_HW State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=$NAMED_PARTITION Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF

cat >"$ETC/cgroup.conf" <<EOF
# Read by slurmd; nothing is constrained (proctrack/linuxproc, task/none).
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"

export SLURM_CONF=$ETC/slurm.conf   # slurmdbd finds slurmdbd.conf beside it
# The job steps need the default path too: snakemake-executor-plugin-slurm-
# jobstep 0.6.1 drops every SLURM_* variable but the job's identity (SLURM_CONF
# among them) from the environment of the srun it runs inside each job, and
# srun without it looks for /etc/slurm/slurm.conf, then DNS SRV records.
SYSTEM_CONF=/etc/slurm/slurm.conf
LINKED_CONF=0
if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
    die "$SYSTEM_CONF exists: the job steps' srun would read it instead of this check's cluster; run the check on a machine without one (or move it aside)"
fi

# ------------------------------------------------------------------ 3. daemons
declare -a DAEMONS=()      # "name pid", in start order
started() { DAEMONS+=("$1 $2"); echo "$2" >"$RUN/$1.started.pid"; say "started $1 (pid $2)"; }

stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((${#DAEMONS[@]})); then
        say "stopping the cluster"
        if squeue -h -o %i 2>/dev/null | grep -q .; then
            scancel --full --quiet $(squeue -h -o %i) 2>/dev/null
            for _ in $(seq 30); do squeue -h -o %i 2>/dev/null | grep -q . || break; sleep 1; done
        fi
        local i name pid
        for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
            read -r name pid <<<"${DAEMONS[i]}"
            if kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid"
                for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
                if kill -0 "$pid" 2>/dev/null; then
                    kill -KILL "$pid"; say "stopped $name (pid $pid) with KILL"
                else
                    say "stopped $name (pid $pid)"
                fi
            else
                say "$name (pid $pid) had already exited"
            fi
            wait "$pid" 2>/dev/null
        done
    fi
    if ((LINKED_CONF)) && [[ $(readlink "$SYSTEM_CONF" 2>/dev/null) == "$SLURM_CONF" ]]; then
        rm -f "$SYSTEM_CONF" && say "removed the link $SYSTEM_CONF"
    fi
    say "logs and runs kept in $WORK"
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -s "$SLURM_CONF" "$SYSTEM_CONF" && LINKED_CONF=1
say "linked $SYSTEM_CONF -> $SLURM_CONF (for the job steps' srun; removed at exit)"

wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    die "$what did not come up within ${limit}s (logs: $LOG)"
}

# MariaDB for slurmdbd: its own data directory, socket and loopback port
mariadb-install-db --no-defaults --datadir="$WORK/db" --user=root --skip-test-db \
    --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db (see $LOG/mariadb-install.log)"
mariadbd --no-defaults --datadir="$WORK/db" --user=root --socket="$RUN/mysqld.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$RUN/mariadb.pid" \
    --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    </dev/null >/dev/null 2>&1 &
started mariadbd $!
wait_for 60 mariadbd mariadb --no-defaults -S "$RUN/mysqld.sock" -u root -e "SELECT 1"
mariadb --no-defaults -S "$RUN/mysqld.sock" -u root <<EOF
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

if [[ -S $MUNGE_SOCKET ]] && munge -n -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
    die "a munged is already serving $MUNGE_SOCKET (not started by this check): stop it first"
fi
mkdir -p "$(dirname "$MUNGE_SOCKET")"
munged -F --force --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$RUN/munged.pid" \
    --log-file="$LOG/munged.log" --seed-file="$RUN/munged.seed" </dev/null >>"$LOG/munged.log" 2>&1 &
started munged $!
wait_for 30 munged bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'"

slurmdbd -D </dev/null >>"$LOG/slurmdbd.log" 2>&1 &
started slurmdbd $!
wait_for 90 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Description="microprop check" Organization=microprop >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" >/dev/null

slurmctld -D -i </dev/null >>"$LOG/slurmctld.log" 2>&1 &
started slurmctld $!
wait_for 60 slurmctld scontrol ping
slurmd -D -N "$NODE" </dev/null >>"$LOG/slurmd.log" 2>&1 &
started slurmd $!
node_idle() { [[ $(sinfo -h -n "$NODE" -p main -o %T) == idle ]]; }
wait_for 90 "node $NODE (idle in sinfo)" node_idle
say "cluster up: $(sinfo -h -N -o '%N %P %T cpus=%c mem=%mMB' | tr '\n' ';' | sed 's/;$//')"
say "SLURM_CONF=$SLURM_CONF"
srun -N1 -n1 -t 1 true || die "srun on $NODE"

# ------------------------------------------------------------------ 4. the runs
# a snapshot of the working tree (tracked and untracked files, .gitignore
# respected): both runs see the same code, whatever is edited meanwhile
SRC=$WORK/src
mkdir -p "$SRC"
git -C "$REPO" ls-files -z -co --exclude-standard | tar -C "$REPO" --null -T - -cf - | tar -C "$SRC" -xf -
say "snapshot of the working tree in $SRC ($(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD || echo ', with uncommitted changes'))"

SMK=("$PY" -m snakemake -s Snakefile)
declare -A T_LOCAL T_SLURM N_LOCAL N_SBATCH N_SLURM_LOCAL
verdict=0
last=${STUDIES[-1]}
# Both runs of a study work in the same directory, $WORK/study/<study>
# (moved to runs/local/ and runs/slurm/ after each): results that record
# absolute paths (the sample study's provenance, and the sha256 of that
# file in each checkpoint) must then be the same too.
finished() { grep -c '^Finished jobid' "$1" | awk '{print $1 - 1}'; }   # without the target rule `all`
for s in "${STUDIES[@]}"; do
    dir=$WORK/study/$s
    mkdir -p "$dir" "$WORK/runs/local" "$WORK/runs/slurm"
    cp "$SRC/.test/config_$s/config.yaml" "$dir/config.yaml"
    say "$s: local run (--cores 2)"
    t0=$SECONDS
    (cd "$SRC" && "${SMK[@]}" --directory "$dir" --configfile "$dir/config.yaml" --cores 2 \
        >"$LOG/local_$s.log" 2>&1) || die "$s: local run (see $LOG/local_$s.log)"
    T_LOCAL[$s]=$((SECONDS - t0))
    N_LOCAL[$s]=$(finished "$LOG/local_$s.log")
    mv "$dir" "$WORK/runs/local/$s"

    mkdir -p "$dir"
    cp "$SRC/.test/config_$s/config.yaml" "$dir/config.yaml"
    extra=()
    if [[ $s == "$last" ]]; then
        # as a real cluster's user does (README): account and partition named
        extra=(--default-resources "slurm_account=$ACCOUNT" "slurm_partition=$NAMED_PARTITION" mem_mb=2000 runtime=30)
    fi
    say "$s: Slurm run (--profile profiles/slurm ${extra[*]})"
    t0=$SECONDS
    # status checks every 5 s instead of the plugin's 40 s: a test-sized run
    (cd "$SRC" && timeout -s INT 5400 "${SMK[@]}" --directory "$dir" --configfile "$dir/config.yaml" \
        --profile profiles/slurm --slurm-init-seconds-before-status-checks 5 --verbose "${extra[@]}" \
        >"$LOG/slurm_$s.log" 2>&1) || die "$s: Slurm run (see $LOG/slurm_$s.log)"
    T_SLURM[$s]=$((SECONDS - t0))
    N_SBATCH[$s]=$(grep -c 'sbatch call: sbatch' "$LOG/slurm_$s.log" || true)
    N_SLURM_LOCAL[$s]=$(($(finished "$LOG/slurm_$s.log") - N_SBATCH[$s]))
    mv "$dir" "$WORK/runs/slurm/$s"
done

# ------------------------------------------------------------------ 5. checks
say "Slurm jobs (sacct)"
SACCT_FMT=JobID,Partition,Account,State,ExitCode,Elapsed,AllocCPUS,ReqMem,AllocTRES%60,Comment%120
n_calls=0
for s in "${STUDIES[@]}"; do
    n_calls=$((n_calls + $(grep -c 'sbatch call: sbatch' "$LOG/slurm_$s.log" || true)))
done
for _ in $(seq 60); do   # slurmctld hands finished jobs on to slurmdbd within seconds
    (($(sacct -X -n -P -S now-1days -o Comment%80 | grep -c '^rule_' || true) >= n_calls)) && break
    sleep 1
done
sacct -X -P -n -S now-1days -o "$SACCT_FMT" >"$LOG/sacct.tsv"
"$PY" - "$LOG/sacct.tsv" "$NAMED_PARTITION" "$ACCOUNT" "$LOG" "${STUDIES[@]}" <<'EOF' || verdict=1
import re
import sys
from collections import Counter
from pathlib import Path

sacct, named, account, logdir, *studies = sys.argv[1:]
rows = [l.split("|") for l in Path(sacct).read_text().splitlines() if l.strip()]
jobs = [r for r in rows if r[9].startswith("rule_")]   # the workflow's jobs (not the srun smoke test)
ok = True
by_part = Counter((r[1], r[2]) for r in jobs)
states = Counter(r[3] for r in jobs)
rules = Counter(re.sub(r"^rule_|_wildcards.*$", "", r[9]) for r in jobs)
gpu_tres = [r for r in jobs if "gres/gpu" in r[8]]
print(f"  jobs: {len(jobs)}  states: {dict(states)}")
print(f"  (partition, account): {dict(by_part)}")
print(f"  rules: {dict(sorted(rules.items()))}")
print(f"  jobs allocated a GPU (gres/gpu in AllocTRES): {len(gpu_tres)}")
if set(states) != {"COMPLETED"}:
    print("  NOT every job COMPLETED"); ok = False
if gpu_tres:
    print("  a GPU was allocated, though every study says device: cpu"); ok = False
# the sbatch calls the plugin made (--verbose logs them)
calls = {s: [l for l in Path(logdir, f"slurm_{s}.log").read_text().splitlines() if "sbatch call: sbatch" in l]
         for s in studies}
n_calls = sum(map(len, calls.values()))
gpus = sum("--gpus" in l or "--gres" in l for ls in calls.values() for l in ls)
last = studies[-1]
named_calls = sum(f"-A {account}" in l and f"-p {named}" in l for l in calls[last])
print(f"  sbatch calls: {n_calls}, with --gpus or --gres: {gpus}; "
      f"of {last}'s {len(calls[last])}, naming -A {account} -p {named}: {named_calls}")
if len(jobs) != n_calls:
    print(f"  sacct knows {len(jobs)} job(s) for {n_calls} sbatch call(s)"); ok = False
if gpus:
    ok = False
on_named = [r for r in jobs if r[1] == named]
if named_calls != len(calls[last]) or len(on_named) != named_calls or any(r[2] != account for r in on_named):
    print(f"  {last} did not run every job under account {account} on partition {named}"); ok = False
sys.exit(0 if ok else 1)
EOF

say "results: local vs Slurm"
for s in "${STUDIES[@]}"; do
    echo "== $s"
    if ! "$PY" "$SRC/benchmarks/compare_runs.py" "$WORK/runs/local/$s" "$WORK/runs/slurm/$s" \
        | tee "$LOG/compare_$s.txt" | sed 's/^/  /'; then
        verdict=1
    fi
done

# ------------------------------------------------------------------ summary
say "summary"
printf '  %-14s %5s %7s %7s %7s %7s  %s\n' study jobs local_s sbatch on_host slurm_s "local vs Slurm"
for s in "${STUDIES[@]}"; do
    printf '  %-14s %5s %7s %7s %7s %7s  %s\n' "$s" "${N_LOCAL[$s]}" "${T_LOCAL[$s]}" "${N_SBATCH[$s]}" \
        "${N_SLURM_LOCAL[$s]}" "${T_SLURM[$s]}" "$(tail -1 "$LOG/compare_$s.txt")"
done
echo "  (jobs: the study's jobs, rule all left out; sbatch: of them submitted to Slurm; on_host: localrules)"
echo "  machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Debian $(cat /etc/debian_version); slurm $(slurmctld -V | awk '{print $2}'); $(date -I)"
echo "  total time: $((SECONDS - START)) s"
if ((verdict == 0)); then
    echo "VERDICT: PASS (every Slurm job completed; every result the same as the local run's)"
else
    echo "VERDICT: FAIL"
fi
exit "$verdict"
