#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the test that submits `sweeper launch slurm`'s
# array script with a real sbatch (tests/e2e/test_launch.py, slow set). Needs root and Debian's
# packages (slurm-wlm, munge; installed when missing). Idempotent: a running cluster is left as it
# is. slurmctld and slurmd run as root with proctrack/linuxproc (no cgroups, no systemd here).
set -euo pipefail

if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
  exit 0  # already up
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm_cluster.sh: needs root" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))  # MB: half the machine
mkdir -p /etc/slurm /var/spool/sweeper-slurmctld /var/spool/sweeper-slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=sweeper-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/sweeper-slurmctld
SlurmdSpoolDir=/var/spool/sweeper-slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
    exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm_cluster.sh: the node did not come up (see /var/log/slurm/)" >&2
exit 1
