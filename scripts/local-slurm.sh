#!/usr/bin/env bash
# A single-node, CPU-only Slurm on this machine, to try the scripts of `ava-dino sweep --emit slurm`
# as a cluster user would. Verified on Debian 12 (Slurm 22.05, no systemd as PID 1).
#
#   apt-get install -y --no-install-recommends slurm-wlm     # once, as root
#   scripts/local-slurm.sh start [DIR]   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf     # printed by `start`; sbatch/squeue/sacct read it
#   scripts/local-slurm.sh status [DIR]
#   scripts/local-slurm.sh stop [DIR]    # stops what `start` started (by pid), keeps DIR's logs
#
# DIR defaults to ${TMPDIR:-/tmp}/ava-dino-slurm. Runs as root: Slurm's daemons need it, and
# SlurmUser=root keeps the setup to one file. Nothing outside DIR is written except munged's
# runtime directory /run/munge (created if missing).
set -euo pipefail

cmd=${1:-}
dir=${2:-${TMPDIR:-/tmp}/ava-dino-slurm}
conf=$dir/slurm.conf

die() {
	echo "local-slurm: $*" >&2
	exit 1
}

# The pid in a pid file, if that process is alive.
live_pid() {
	local pid
	[[ -f $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

write_conf() {
	local host cpus mem
	host=$(hostname -s)
	# slurmd reports this machine's CPUs and memory; a node declared larger than it is would
	# be drained ("Low RealMemory"), so declare exactly what it finds.
	cpus=$(slurmd -C | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
	mem=$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
	[[ -n $cpus && -n $mem ]] || die "slurmd -C did not report CPUs and RealMemory"
	mkdir -p "$dir/state" "$dir/spool"
	cat >"$conf" <<EOF
# Written by scripts/local-slurm.sh: one CPU-only node, no accounting, no cgroups.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
	[[ $(id -u) == 0 ]] || die "run as root (Slurm's daemons need it)"
	command -v slurmctld >/dev/null ||
		die "slurmctld not found: apt-get install -y --no-install-recommends slurm-wlm"
	if live_pid "$dir/slurmctld.pid" >/dev/null; then
		die "already running (SLURM_CONF=$conf); stop it first: $0 stop $dir"
	fi
	write_conf
	if ! pgrep -u munge -x munged >/dev/null; then
		mkdir -p /run/munge
		chown munge: /run/munge
		su -s /bin/sh munge -c munged
		# Remember that munged is ours, so that `stop` ends it and nothing else.
		touch "$dir/munged.ours"
	fi
	SLURM_CONF=$conf slurmctld
	SLURM_CONF=$conf slurmd
	# Wait until the node takes jobs (a few seconds); give up after a minute.
	local i state
	for i in $(seq 60); do
		state=$(SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null || true)
		[[ $state == idle ]] && break
		sleep 1
	done
	[[ $state == idle ]] || die "the node is '${state:-unknown}', not idle after 60 s; see $dir/slurmctld.log and $dir/slurmd.log"
	echo "local Slurm is up; now: export SLURM_CONF=$conf"
}

stop() {
	local name pid
	for name in slurmd slurmctld; do
		if pid=$(live_pid "$dir/$name.pid"); then
			kill "$pid"
		fi
	done
	if [[ -f $dir/munged.ours ]]; then
		if pid=$(live_pid /run/munge/munged.pid); then
			kill "$pid"
		fi
		rm -f "$dir/munged.ours"
	fi
	echo "local Slurm stopped (logs kept in $dir)"
}

case $cmd in
start) start ;;
stop) stop ;;
status) SLURM_CONF=$conf sinfo && SLURM_CONF=$conf squeue ;;
*) die "usage: $0 start|stop|status [DIR]" ;;
esac
