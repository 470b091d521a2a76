#!/usr/bin/env bash
# An MLflow tracking server for a cluster's workers (docs/cluster.md).
#
#   scripts/cluster/mlflow_server.sh start DIR BACKEND_URI [PORT] [HOST]
#   scripts/cluster/mlflow_server.sh stop DIR
#   scripts/cluster/mlflow_server.sh url DIR
#
# `start` runs `mlflow server` with BACKEND_URI as its backend store (a PostgreSQL URL, e.g.
# the one scripts/cluster/postgres.sh prints) and DIR/artifacts as the artefact root, served
# through the server (`--serve-artifacts`: workers need no access to the artefact folder).
# It listens on 127.0.0.1 by default (PORT 5000); give HOST (e.g. the login node's address)
# only on a trusted network: the server has no authentication. Workers then log over HTTP
# (`KDBENCH_TRACKING_URI=http://HOST:PORT`), never straight to the database.
# The last line printed (and DIR/url) is the tracking URI. Idempotent: a running server's URI
# is printed again. `stop` ends it by its pid file (never by name).
set -euo pipefail

usage() { sed -n '4,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
[[ $# -ge 2 ]] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")/../.." && pwd)
python=${KDBENCH_PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x $here/.venv/bin/python ]]; then python=$here/.venv/bin/python; else python=python3; fi
fi

running() { [[ -f $dir/mlflow.pid ]] && kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null; }

case $action in
  start)
    [[ $# -ge 3 ]] || usage
    backend=$3 port=${4:-5000} host=${5:-127.0.0.1}
    if running; then cat "$dir/url"; exit 0; fi
    if ! "$python" -c "import mlflow" 2>/dev/null; then
      echo "error: $python cannot import mlflow; run \`make install\` or set KDBENCH_PYTHON" >&2
      exit 1
    fi
    mkdir -p "$dir/artifacts"
    url="http://$host:$port"
    # setsid: its own session, so that the caller's terminal or test runner ending does not
    # signal it; stop ends the whole group.
    setsid "$python" -m mlflow server --backend-store-uri "$backend" \
      --artifacts-destination "$dir/artifacts" --serve-artifacts \
      --host "$host" --port "$port" --workers "${MLFLOW_WORKERS:-2}" \
      >"$dir/mlflow.log" 2>&1 < /dev/null &
    echo $! >"$dir/mlflow.pid"
    for _ in $(seq 1 120); do
      if "$python" - "$url" <<'EOF' 2>/dev/null; then break; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read() == b"OK" else 1)
EOF
      if ! running; then
        echo "error: mlflow server exited; the end of $dir/mlflow.log:" >&2
        tail -n 20 "$dir/mlflow.log" >&2
        exit 1
      fi
      sleep 0.5
    done
    if ! running; then echo "error: mlflow server did not start (see $dir/mlflow.log)" >&2; exit 1; fi
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
  stop)
    if running; then
      pid=$(cat "$dir/mlflow.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
    fi
    rm -f "$dir/mlflow.pid"
    ;;
  url)
    cat "$dir/url"
    ;;
  *)
    usage
    ;;
esac
