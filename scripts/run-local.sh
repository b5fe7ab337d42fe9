#!/usr/bin/env bash
# Runs the gate once against a local Redis: the one on 127.0.0.1:6379 when it answers, else a
# redis-server started here (installed with apt-get when missing and running as root).
# Run it twice: the second run takes the fast path.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [[ -z $bin ]]; then
  # Built as `make build` builds it, so that this script needs nothing but Go and bash.
  bin=bin/peerdb-maintenance
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin" .
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -z ${REDIS_URL:-} ]]; then
  if port_open 6379; then
    REDIS_URL=redis://127.0.0.1:6379/0
  elif port_open 16379; then
    REDIS_URL=redis://127.0.0.1:16379/0   # the one an earlier make run started
  else
    if ! command -v redis-server >/dev/null 2>&1; then
      if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
      else
        echo "no Redis on 127.0.0.1:6379 and no redis-server: install it (sudo apt-get install redis-server) or set REDIS_URL" >&2
        exit 1
      fi
    fi
    port=16379
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
      --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
    for _ in $(seq 50); do port_open "$port" && break; sleep 0.1; done
    port_open "$port" || { echo "redis-server did not start: see $dir/redis.log" >&2; exit 1; }
    echo "started redis-server on 127.0.0.1:$port (stop it with: kill \$(cat $dir/redis.pid))" >&2
    REDIS_URL=redis://127.0.0.1:$port/0
  fi
fi

export REDIS_URL
export PEERDB_DEPLOYMENT_VERSION=${PEERDB_DEPLOYMENT_VERSION:-0.1.0}
export MAINTENANCE_NAME=${MAINTENANCE_NAME:-local-demo}
export MAINTENANCE_TASKS_FILE=${MAINTENANCE_TASKS_FILE:-examples/local-tasks.yaml}
export LOG_FORMAT=${LOG_FORMAT:-text}

"$bin" run
echo
"$bin" status
