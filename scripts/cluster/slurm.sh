#!/usr/bin/env bash
# Throw-away single-node SLURM cluster for kdbench's distributed tests (docs/cluster.md says
# why each setting is what it is).
#
#   slurm.sh start DIR   install slurm+munge if missing, start munged (unless one already works),
#                        slurmctld and slurmd with DIR/etc/slurm.conf, wait until the node is idle,
#                        print the two lines of DIR/env.sh (last lines)
#   slurm.sh stop DIR    scancel all jobs, end slurmd, slurmctld (and munged if we started it)
#                        by their pid files; succeeds if already stopped; leaves DIR's logs
#   slurm.sh env DIR     print DIR/env.sh (export SLURM_CONF=..., export PATH=DIR/bin:$PATH)
#
# Everything is under DIR: etc/slurm.conf, state/, spool/, log/, run/*.pid, jobcomp.log and
# bin/sacct, a stand-in for accounting (there is no slurmdbd) that answers submitit's sacct calls
# from `scontrol show job`. Daemons talk over 127.0.0.1 (SlurmctldPort 6817, SlurmdPort 6818).
# Must run as root (slurmd launches jobs, munged runs as the munge user).
# Exit codes: 0 ok, 1 failure, 2 usage, 3 slurm/munge missing and cannot be installed.
set -euo pipefail

PROG=$(basename "$0")
START_TIMEOUT=30
CTLD_PORT=6817
SLURMD_PORT=6818
MUNGE_PIDFILE=/run/munge/munged.pid

die() { echo "error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }
usage() {
  echo "usage: $PROG start DIR | stop DIR | env DIR" >&2
  exit 2
}

export PATH="$PATH:/usr/sbin:/sbin"

# --- install ----------------------------------------------------------------------------------
ensure_slurm() {
  if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
     && command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: slurm is not installed and apt-get is not usable (need root on Debian/Ubuntu)." \
      "Install, as root: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge" >&2
    exit 3
  fi
  log "installing slurmctld slurmd slurm-client munge with apt-get ..."
  local t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  local pkgs=(slurmctld slurmd slurm-client munge)
  if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >&2; then
    apt-get update >&2 || true
    apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 \
      || { echo "error: apt-get install ${pkgs[*]} failed" >&2; exit 3; }
  fi
  log "installed in $((SECONDS - t0)) s"
  command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 \
    || { echo "error: packages installed but slurmctld/munged not found" >&2; exit 3; }
}

# --- process helpers (by pid only, never by name) -------------------------------------------------
# pid_alive PIDFILE EXE: true if PIDFILE names a live process whose executable is EXE (guards
# against a recycled pid).
pid_of() { [[ -s $1 ]] && tr -dc '0-9' < "$1"; }
pid_alive() {
  local pid exe
  pid=$(pid_of "$1") || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  # Debian installs e.g. /usr/sbin/slurmctld as an alternatives link to slurmctld-wlm
  [[ $(basename "$exe") == "$2" || $exe == "$(readlink -f "$(command -v "$2")" 2>/dev/null)" ]]
}
# end_pid PIDFILE EXE: SIGTERM, wait up to 10 s, then SIGKILL; removes PIDFILE.
end_pid() {
  local pidfile=$1 exe=$2 pid i
  if pid_alive "$pidfile" "$exe"; then
    pid=$(pid_of "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      # a zombie counts as ended
      [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
      log "$exe (pid $pid) did not exit after SIGTERM+10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    log "stopped $exe (pid $pid)"
  fi
  rm -f "$pidfile"
}

# --- munge ----------------------------------------------------------------------------------------
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_works; then
    if [[ -s $DIR/run/munged.ours ]] && pid_alive "$DIR/run/munged.ours" munged; then
      return 0                               # ours, from an earlier start of this DIR
    fi
    log "reusing the running munged (will not stop it)"
    rm -f "$DIR/run/munged.ours"
    return 0
  fi
  id munge >/dev/null 2>&1 || die "user 'munge' does not exist (is the munge package installed?)"
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
      runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
      ( umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none )
      chown munge: /etc/munge/munge.key
    fi
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge: /run/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  local args=(--pid-file="$MUNGE_PIDFILE")
  if ! runuser -u munge -- munged "${args[@]}" 2>"$DIR/log/munged.start.log"; then
    # e.g. a stale socket/lock left by a killed munged: --force lets munged replace it
    log "munged refused to start ($(tr '\n' ' ' < "$DIR/log/munged.start.log")); retrying with --force"
    runuser -u munge -- munged "${args[@]}" --force 2>>"$DIR/log/munged.start.log" \
      || { cat "$DIR/log/munged.start.log" >&2; die "munged failed to start"; }
  fi
  local i
  for ((i = 0; i < 50; i++)); do
    munge_works && [[ -s $MUNGE_PIDFILE ]] && break
    sleep 0.1
  done
  munge_works || die "munged started but 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"
  cp "$MUNGE_PIDFILE" "$DIR/run/munged.ours"     # we started it: stop will end it
  log "started munged (pid $(pid_of "$DIR/run/munged.ours"))"
}

# --- config ---------------------------------------------------------------------------------------
write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9][0-9]*\).*/\1/p' | head -n1)
  [[ -n $mem ]] || die "could not read RealMemory from 'slurmd -C'"
  cat > "$CONF.tmp" <<EOF
# Generated by scripts/cluster/slurm.sh for a throw-away single-node cluster in $DIR.
ClusterName=kdbench
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# bind to the configured addresses (127.0.0.1) instead of 0.0.0.0
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# finished jobs stay visible to scontrol (and so to bin/sacct) for an hour
MinJobAge=3600
JobRequeue=1
ReturnToService=2
KillWait=5
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv -f "$CONF.tmp" "$CONF"
}

# bin/sacct: stand-in for accounting (see the header of the generated file).
write_sacct() {
  cat > "$DIR/bin/sacct" <<'PYEOF'
#!/usr/bin/env python3
"""sacct stand-in written by kdbench scripts/cluster/slurm.sh.

Why: this throw-away cluster has no slurmdbd, so the real sacct fails and submitit then warns
"status may be inaccurate" and can wait forever on a job that died without output. submitit only
calls
    sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]
so this answers that (and a few neighbours) from `scontrol show job -o ID`; the cluster keeps
finished jobs for MinJobAge=3600 s. Array tasks are reported as <ArrayJobId>_<ArrayTaskId>, a
pending array remainder as <ArrayJobId>_[2-5] (or _[2-5%4] when throttled), like the real sacct.
Jobs scontrol has forgotten (older than MinJobAge) are looked up in the jobcomp log (JobCompLoc
in slurm.conf); Slurm 22.05 writes no array fields there, so a forgotten array task is only
found under its raw job id. Not supported: steps (.batch/.0), time windows, users, and any
field other than those in FIELDS.
"""
import os
import re
import subprocess
import sys

FIELDS = {  # sacct field (lower case) -> (header, scontrol key)
    "jobid": ("JobID", None), "jobidraw": ("JobIDRaw", "JobId"), "jobname": ("JobName", "JobName"),
    "state": ("State", "JobState"), "nodelist": ("NodeList", "NodeList"),
    "partition": ("Partition", "Partition"), "exitcode": ("ExitCode", "ExitCode"),
    "elapsed": ("Elapsed", "RunTime"), "start": ("Start", "StartTime"), "end": ("End", "EndTime"),
    "submit": ("Submit", "SubmitTime"), "reason": ("Reason", "Reason"),
}
KEY_RE = re.compile(r"(?:^|\s)([A-Za-z:/]+)=")


def die(msg):
    print(f"sacct (kdbench stand-in): {msg}", file=sys.stderr)
    sys.exit(1)


def parse_record(line):
    """`Key=Value Key=Value ...` -> dict; values may contain spaces (e.g. Command, JobName)."""
    out, matches = {}, list(KEY_RE.finditer(line))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out.setdefault(m.group(1), line[m.end():end].strip())
    if "JobName" not in out and "Name" in out:
        out["JobName"] = out["Name"]
    return out


def scontrol_records(job_id=None):
    cmd = ["scontrol", "show", "job", "-o"] + ([job_id] if job_id else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return []          # "Invalid job id specified": forgotten or never existed
    return [parse_record(l) for l in res.stdout.splitlines() if l.startswith("JobId=")]


def jobcomp_records(job_id):
    """Finished jobs from jobcomp/filetxt, for ids scontrol no longer knows."""
    path = None
    conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    try:
        with open(conf) as fh:
            for line in fh:
                m = re.match(r"\s*JobCompLoc\s*=\s*(\S+)", line, re.I)
                if m:
                    path = m.group(1)
    except OSError:
        return []
    if not path or not os.path.isfile(path):
        return []
    main, _, task = job_id.partition("_")
    found = {}
    with open(path, errors="replace") as fh:
        for line in fh:
            rec = parse_record(line.strip())
            if "JobId" not in rec:
                continue
            if rec.get("ArrayJobId") == main and (not task or rec.get("ArrayTaskId") == task):
                found[(rec["JobId"])] = rec       # last record of a job wins (requeues)
            elif rec["JobId"] == job_id and not task:
                found[rec["JobId"]] = rec
    return list(found.values())


def display_id(rec):
    aj, at = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
    if aj and at and at not in ("(null)", "N/A"):
        return f"{aj}_{at}" if at.isdigit() else f"{aj}_[{at}]"
    return rec.get("JobId", "")


def sort_key(rec):
    jid = display_id(rec)
    main, _, rest = jid.partition("_")
    first = re.match(r"\[?(\d+)", rest)
    return (int(main) if main.isdigit() else 0, int(first.group(1)) if first else -1, jid)


def value(rec, field):
    if field == "jobid":
        return display_id(rec)
    v = rec.get(FIELDS[field][1], "")
    if field == "nodelist" and v in ("", "(null)"):
        return "None assigned"
    if field == "state":
        return v.split()[0] if v else "UNKNOWN"
    return v


def main(argv):
    fields, jobs, sep_end, header = ["jobid", "jobname", "partition", "state", "exitcode"], [], False, True
    i = 0
    while i < len(argv):
        a = argv[i]
        def arg():
            nonlocal i
            if "=" in a and a.startswith("--"):
                return a.split("=", 1)[1]
            if len(a) > 2 and not a.startswith("--"):
                return a[2:]
            i += 1
            if i >= len(argv):
                die(f"option {a} needs a value")
            return argv[i]
        if a in ("-P", "--parsable2"):
            sep_end = False
        elif a in ("-p", "--parsable"):
            sep_end = True
        elif a in ("-n", "--noheader"):
            header = False
        elif a in ("-X", "--allocations", "-a", "--allusers", "-D", "--duplicates"):
            pass
        elif a.startswith(("-o", "--format")):
            fields = [f.strip().lower().split("%")[0] for f in arg().split(",") if f.strip()]
        elif a.startswith(("-j", "--jobs")):
            jobs += [j.strip() for j in arg().split(",") if j.strip()]
        else:
            die(f"unsupported argument {a!r} (this stand-in only answers "
                "'sacct -o JobID,State,NodeList --parsable2 -j ID')")
        i += 1
    for f in fields:
        if f not in FIELDS:
            die(f"unsupported field {f!r}; supported: {', '.join(sorted(FIELDS))}")

    records, seen = [], set()
    for job in (jobs or [None]):
        if job is not None and "." in job:
            continue      # steps are not tracked
        recs = scontrol_records(job)
        if not recs and job is not None:
            recs = jobcomp_records(job)
        for rec in recs:
            key = display_id(rec)
            if key not in seen:
                seen.add(key)
                records.append(rec)
    records.sort(key=sort_key)

    end = "|" if sep_end else ""
    if header:
        print("|".join(FIELDS[f][0] for f in fields) + end)
    for rec in records:
        print("|".join(value(rec, f) for f in fields) + end)


if __name__ == "__main__":
    main(sys.argv[1:])
PYEOF
  chmod 755 "$DIR/bin/sacct"
}

write_env() {
  cat > "$DIR/env.sh" <<EOF
export SLURM_CONF=$CONF
export PATH=$DIR/bin:\$PATH
EOF
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

node_state() { SLURM_CONF=$CONF sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

show_logs() {
  local f
  for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    echo "----- last lines of $f -----" >&2
    tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
  done
}

cmd_start() {
  ensure_slurm
  [[ $(id -u) -eq 0 ]] || die "slurm.sh start must run as root (slurmd and munged need it)"
  mkdir -p "$DIR"/{etc,bin,state,spool,log,run}
  chmod 755 "$DIR"

  start_munge

  local ctld_up=0 slurmd_up=0
  pid_alive "$DIR/run/slurmctld.pid" slurmctld && ctld_up=1
  pid_alive "$DIR/run/slurmd.pid" slurmd && slurmd_up=1

  write_sacct
  write_env
  if (( ctld_up && slurmd_up )) && [[ $(node_state) == idle* || $(node_state) == mix* || $(node_state) == alloc* ]]; then
    log "cluster in $DIR already running"
    cat "$DIR/env.sh"
    return 0
  fi

  export SLURM_CONF=$CONF
  local t0=$SECONDS
  if (( ! ctld_up )); then
    port_busy $CTLD_PORT && die "port $CTLD_PORT is in use (another slurmctld?); stop it first"
    write_conf
    slurmctld -f "$CONF" -i >"$DIR/log/slurmctld.stdout" 2>&1 \
      || { show_logs; die "slurmctld failed to start"; }
  fi
  if (( ! slurmd_up )); then
    port_busy $SLURMD_PORT && die "port $SLURMD_PORT is in use (another slurmd?); stop it first"
    slurmd -f "$CONF" >"$DIR/log/slurmd.stdout" 2>&1 \
      || { show_logs; cmd_stop; die "slurmd failed to start"; }
  fi

  local state="" deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    state=$(node_state)
    [[ $state == idle* || $state == mix* || $state == alloc* ]] && break
    sleep 0.5
  done
  if [[ $state != idle* && $state != mix* && $state != alloc* ]]; then
    show_logs
    log "node not idle after ${START_TIMEOUT} s (state: '${state:-no answer}'); stopping"
    cmd_stop || true
    exit 1
  fi
  log "cluster up in $((SECONDS - t0)) s (node $(hostname -s): $state)"
  cat "$DIR/env.sh"
}

cmd_stop() {
  if [[ -f $CONF ]] && pid_alive "$DIR/run/slurmctld.pid" slurmctld; then
    export SLURM_CONF=$CONF
    local ids i
    ids=$(squeue -h -o '%F' 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${ids// /} ]]; then
      log "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      # wait for running jobs to be cleaned up by slurmd (KillWait=5) so no job process survives
      for ((i = 0; i < 40; i++)); do
        [[ -z $(squeue -h -t R,CG,S,ST -o '%i' 2>/dev/null) ]] && break
        sleep 0.5
      done
      [[ -z $(squeue -h -t R,CG,S,ST -o '%i' 2>/dev/null) ]] \
        || log "warning: some jobs were still ending when the daemons were stopped"
    fi
  fi
  end_pid "$DIR/run/slurmd.pid" slurmd
  end_pid "$DIR/run/slurmctld.pid" slurmctld
  if [[ -s $DIR/run/munged.ours ]]; then
    end_pid "$DIR/run/munged.ours" munged
    [[ -s $MUNGE_PIDFILE ]] || rm -f "$MUNGE_PIDFILE"
  fi
  return 0
}

cmd_env() {
  [[ -s $DIR/env.sh ]] || die "no $DIR/env.sh (run: $PROG start $DIR)"
  cat "$DIR/env.sh"
}

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$2
[[ -n $DIR ]] || usage
if [[ $CMD == start ]]; then mkdir -p "$DIR" || die "cannot create folder $DIR"; fi
if [[ ! -d $DIR ]]; then
  [[ $CMD == stop ]] && { log "$DIR does not exist; nothing to stop"; exit 0; }
  die "folder $DIR does not exist"
fi
DIR=$(cd "$DIR" && pwd -P)
CONF=$DIR/etc/slurm.conf

case $CMD in
  start) cmd_start ;;
  stop)  cmd_stop ;;
  env)   cmd_env ;;
  *) usage ;;
esac
