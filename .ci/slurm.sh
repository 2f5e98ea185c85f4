#!/usr/bin/env bash
# CI step: the tiny study through a real single-node SLURM with the shipped profile
# (workflow/profiles/slurm), SLURM accounting off, as many small clusters run it.
#   1. install slurmctld/slurmd/munge from the distribution's packages, start them without systemd
#   2. phase_g_scaled of tests/data/tiny_study.yaml, --jobs 2, no other flags: exit 0, every
#      cluster job through sbatch (the controller's log), verification passed
#   3. fault: one output removed, its job killed on the node at every attempt: reported failed,
#      retried twice with more memory, the run exits non-zero (a time limit proves it does not hang)
#   4. rerun: rebuilds only what is missing and verifies again
# Daemons are stopped by pid on exit. Run from the repository root with the venv active:
#   bash .ci/slurm.sh
# Skips itself with one line where it cannot run (not root, no apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "== SLURM: SKIPPED (needs root to install and start munge/slurmctld/slurmd)"; exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "== SLURM: SKIPPED (no apt-get to install slurm-wlm and munge)"; exit 0
fi
python -c "import snakemake_executor_plugin_slurm" \
  || { echo "== SLURM: FAILED (snakemake-executor-plugin-slurm is not installed)"; exit 1; }

T0=$SECONDS
echo "== SLURM: install (apt-get: slurmctld slurmd slurm-client munge)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 300 apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi

# The configuration goes where every SLURM command looks: the plugin's job step drops SLURM_CONF
# from the environment of its srun, so a configuration elsewhere is not found inside the jobs.
SLURM_CONF=/etc/slurm/slurm.conf
if [ -e "$SLURM_CONF" ]; then
  echo "== SLURM: SKIPPED ($SLURM_CONF exists: a configured SLURM is not replaced)"; exit 0
fi
S=$(mktemp -d /tmp/ci-slurm.XXXXXX)
mkdir -p "$S/state" "$S/spool" "$S/work/config"
PIDS=()
MUNGE_PID=
KILLER_PID=

cleanup() {
  local rc=$?
  set +e
  [ -n "$KILLER_PID" ] && kill "$KILLER_PID" 2>/dev/null
  if [ ${#PIDS[@]} -gt 0 ]; then
    scancel --user=root >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  fi
  if [ -n "$MUNGE_PID" ]; then kill "$MUNGE_PID" 2>/dev/null; fi
  rm -f "$SLURM_CONF"
  if [ $rc -ne 0 ]; then
    echo "== SLURM: FAILED (rc $rc); controller log tail:"
    tail -n 20 "$S/slurmctld.log" 2>/dev/null
    echo "   a failed job's SLURM log:"
    find "$S/work/.snakemake/slurm_logs" -name '*.log' 2>/dev/null | head -1 | xargs -r tail -n 20
    echo "   logs and results kept in $S"
  else
    rm -rf "$S"
  fi
  exit $rc
}
trap cleanup EXIT

fail() { echo "== SLURM: FAILED: $*"; exit 1; }

# munge: reuse a running munged, else start one (as user munge) with the package's key
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /etc/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  MUNGE_PID=$(cat /run/munge/munged.pid)
  (munge -n | unmunge) >/dev/null || fail "munge does not authenticate"
fi

# one node: this machine's CPUs, its memory less 2 GB; accounting off; MinJobAge left at 300 s
HOST=$(hostname -s)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
cat > "$SLURM_CONF" <<EOF
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$((MEM - 2000)) State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -f "$SLURM_CONF" >"$S/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$S/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
  sleep 1
done
[ "$(sinfo -h -o %T)" = idle ] || fail "node not idle: $(sinfo -h -o '%T %E')"
if sacct -n >/dev/null 2>&1; then fail "sacct answers: accounting is meant to be off here"; fi
echo "== SLURM: up in $((SECONDS - T0)) s: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T');" \
  "sacct: $(sacct -n 2>&1 | head -1)"

W=$S/work
printf 'study: %s\nresults: results\n' "$REPO/tests/data/tiny_study.yaml" >"$W/config/config.yaml"
R=$W/results/tiny/scaled
export OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
# the shipped profile, --jobs 2 and nothing else; a time limit on each run (KILL 30 s after TERM)
SMK=(snakemake -s "$REPO/workflow/Snakefile" -d "$W" --workflow-profile
     "$REPO/workflow/profiles/slurm" --jobs 2 phase_g_scaled)
submitted() { grep -c "_slurm_rpc_submit_batch_job: JobId=" "$S/slurmctld.log" || true; }
# rule -> count from Snakemake's "Job stats" table
job_stats() { sed -n '/^Job stats:/,/^total/p' "$1" | awk '$2 ~ /^[0-9]+$/ && $1 != "total" {print $1, $2}' | sort -u; }
verified() {
  [ -f "$R/report/verified.ok" ] || return 1
  python - "$R/report/verification_report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [c["name"] for c in r.get("checks", []) if not c.get("passed")]
print(f"verification: passed={r.get('passed')}, {len(r.get('checks', []))} checks, failed: {bad}")
sys.exit(0 if r.get("passed") is True and not bad else 1)
EOF
}

echo "== SLURM: tiny study, shipped profile, --jobs 2"
t=$SECONDS
rc=0
timeout -k 30 900 "${SMK[@]}" >"$S/run1.log" 2>&1 || rc=$?
echo "   exit $rc after $((SECONDS - t)) s"
if [ $rc -ne 0 ]; then tail -n 40 "$S/run1.log"; fail "tiny study through SLURM exited $rc"; fi
n_sub=$(submitted)
n_smk=$(grep -c "has been submitted with SLURM jobid" "$S/run1.log" || true)
n_done=$(grep -c "_job_complete: JobId=[0-9]* WEXITSTATUS 0" "$S/slurmctld.log" || true)
local_rules=$(sed -n '/^localrules:/,/^$/p' "$REPO/workflow/Snakefile" | tr -d ' ,' | tail -n +2)
n_cluster=$(job_stats "$S/run1.log" | grep -vwF "${local_rules:-none}" \
  | awk '$1 !~ /^phase_/ {s += $2} END {print s + 0}')
echo "   sbatch jobs: $n_sub in the controller's log ($n_done ended with exit 0)," \
  "$n_smk submitted by Snakemake, $n_cluster planned cluster jobs"
[ "$n_sub" -gt 0 ] && [ "$n_sub" = "$n_smk" ] && [ "$n_sub" = "$n_cluster" ] \
  && [ "$n_done" = "$n_sub" ] || fail "job counts differ"
grep -q "Falling back to 'sacct'" "$S/run1.log" && fail "the plugin switched to sacct"
verified || fail "verification"

echo "== SLURM: fault: one train_baseline output removed, its job killed at every attempt"
cell=$(basename "$(ls "$R"/recon/baseline/*.h5 | head -1)" .h5)
rm "$R/recon/baseline/$cell.h5"
before=$(submitted)
# kill the running job step's processes (as an out-of-memory kill or a crash would); log each kill
(
  # no errexit here: a job that ends between squeue and scontrol makes listpids fail, and that
  # must not end the killer (the next attempt would then run unharmed)
  set +e +o pipefail
  while true; do
    for j in $(squeue -h -t RUNNING -o '%i %k' | awk '/rule_train_baseline/ {print $1}'); do
      pids=$(scontrol listpids "$j" 2>/dev/null | awk 'NR > 1 && $3 ~ /^[0-9]+$/ {print $1}')
      if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null && echo "$j" >>"$S/killed"; fi
    done
    sleep 1
  done
) &
KILLER_PID=$!
t=$SECONDS
rc=0
timeout -k 30 300 "${SMK[@]}" >"$S/run2.log" 2>&1 || rc=$?
kill "$KILLER_PID" 2>/dev/null; wait "$KILLER_PID" 2>/dev/null || true; KILLER_PID=
killed=$(sort -u "$S/killed" 2>/dev/null | wc -l)
states=$(for j in $(sort -u "$S/killed"); do squeue -h --states=all -j "$j" -o %T 2>/dev/null; done | sort | uniq -c | xargs)
# the memory each attempt asked for (a job's block is printed at its start and with its error)
mem=$(awk '/^rule train_baseline:/ {f=1} f && /resources:/ {match($0, /mem_mb=[0-9]+/); print substr($0, RSTART+7, RLENGTH-7); f=0}' "$S/run2.log" | sort -un | xargs)
echo "   exit $rc after $((SECONDS - t)) s; $killed job(s) killed (SLURM states: $states);" \
  "train_baseline attempts asked for mem_mb: $mem; sbatch jobs: $(( $(submitted) - before ))"
[ $rc -eq 124 ] && fail "the run with a killed job hung (time limit reached)"
[ $rc -ne 0 ] || fail "the run with a killed job exited 0"
[ "$killed" -eq 3 ] || fail "expected 3 killed attempts (1 + 2 retries), got $killed"
[ "$(echo "$mem" | wc -w)" -eq 3 ] || fail "expected 3 attempts, each asking for more memory: $mem"
grep -q "SLURM status is: 'FAILED'" "$S/run2.log" || fail "no FAILED status reported"

echo "== SLURM: rerun"
t=$SECONDS
before=$(submitted)
rc=0
timeout -k 30 300 "${SMK[@]}" >"$S/run3.log" 2>&1 || rc=$?
rules=$(job_stats "$S/run3.log" | xargs)
echo "   exit $rc after $((SECONDS - t)) s; sbatch jobs: $(( $(submitted) - before )); jobs: $rules"
[ $rc -eq 0 ] || { tail -n 40 "$S/run3.log"; fail "rerun exited $rc"; }
job_stats "$S/run3.log" | grep -qx "train_baseline 1" || fail "rerun did not rebuild one train_baseline"
job_stats "$S/run3.log" | grep -qE "^(simulate_dataset|train_pinn|reconstruct_iterative) " \
  && fail "rerun rebuilt jobs whose outputs were there"
verified || fail "verification after the rerun"
echo "== SLURM: passed in $((SECONDS - T0)) s"
