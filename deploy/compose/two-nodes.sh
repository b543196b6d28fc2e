#!/usr/bin/env bash
# Two gateways on one machine, as the cluster's end-to-end tests run them: PostgreSQL
# (fixtures/postgres.sh) and an S3-compatible object store (fixtures/s3.sh: SeaweedFS) in
# STATE_DIR, and two `portcullis serve` that share the store, the object store and the secret
# key, each with its own ports and data directory. Everything listens on 127.0.0.1 only, on free
# ports; the secrets are made here, in STATE_DIR/secrets.
# Prints a line per gateway once it answers ready:
#   NODE a https=https://127.0.0.1:PORT rdp=127.0.0.1:PORT ops=http://127.0.0.1:PORT
# and writes the same to STATE_DIR/nodes.env (NODE_A_HTTPS=..., for scripts).
#
# usage: deploy/compose/two-nodes.sh STATE_DIR
#   the gateway binary: $PORTCULLIS_BIN, else target/release/portcullis, else target/debug/portcullis
#   the first administrator: `admin`, password in STATE_DIR/secrets/admin-password
#   stop with: deploy/compose/two-nodes.sh stop STATE_DIR   (the state stays; rm -rf it after)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

# stop DIR: both gateways (SIGTERM: a graceful stop within their grace, then SIGKILL), then the
# object store and PostgreSQL.
stop() {
  local dir=$1 pids=() pid node
  for node in a b; do
    if [ -f "$dir/node-$node/gateway.pid" ]; then
      pid=$(cat "$dir/node-$node/gateway.pid")
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
      rm -f "$dir/node-$node/gateway.pid"
    fi
  done
  for pid in "${pids[@]}"; do
    # shutdown_grace_secs is 10 below; a few seconds more for the runtime.
    for _ in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ -d "$dir/s3" ] && "$root/fixtures/s3.sh" stop "$dir/s3"
  [ -d "$dir/pg" ] && "$root/fixtures/postgres.sh" stop "$dir/pg"
  return 0
}

if [ "${1:-}" = "stop" ]; then
  stop "${2:?state dir}"
  exit 0
fi

dir=${1:?usage: two-nodes.sh STATE_DIR | two-nodes.sh stop STATE_DIR}
bin=${PORTCULLIS_BIN:-}
if [ -z "$bin" ]; then
  for candidate in "$root/target/release/portcullis" "$root/target/debug/portcullis"; do
    [ -x "$candidate" ] && { bin=$candidate; break; }
  done
fi
[ -x "${bin:-}" ] || { echo "no gateway binary: cargo build --release -p portcullis, or set PORTCULLIS_BIN" >&2; exit 1; }
if [ -e "$dir/pg/data" ]; then
  echo "$dir holds an earlier run: stop it ($0 stop $dir) and remove it, or name another" >&2
  exit 1
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# PostgreSQL runs as the `postgres` user when this runs as root: it must reach its own folder.
chmod 755 "$dir"
mkdir -p "$dir/secrets"
chmod 700 "$dir/secrets"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
random_hex() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
# A file of the caller's only, holding one line.
secret_file() { (umask 077 && printf '%s\n' "$2" >"$dir/secrets/$1"); }

# Anything started is stopped again if a later step fails.
trap 'echo "two-nodes: failed; stopping what was started" >&2; stop "$dir"' ERR

# The secrets: the key the gateways share (PORTCULLIS_SECRET_KEY), the database's and the object
# store's passwords, the first administrator's.
secret_file secret-key "$(random_hex 32)"
secret_file pg-password "$(random_hex 16)"
secret_file s3-secret "$(random_hex 20)"
secret_file admin-password "$(random_hex 12)"
s3_access=$(random_hex 10)

pg_port=$(free_port)
pg_ready=$("$root/fixtures/postgres.sh" "$pg_port" portcullis "$(head -n 1 "$dir/secrets/pg-password")" "$dir/pg")
pg_ca=${pg_ready##* ca=}
# The gateways' own database (they create their schema in it at the first start).
PGPASSWORD=$(head -n 1 "$dir/secrets/pg-password") psql -h 127.0.0.1 -p "$pg_port" -U portcullis \
  -d postgres -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE portcullis'

s3_port=$(free_port)
s3_ready=$("$root/fixtures/s3.sh" "$s3_port" "$s3_access" "$(head -n 1 "$dir/secrets/s3-secret")" recordings "$dir/s3")
s3_endpoint=${s3_ready#READY endpoint=}

# ready OPS_PORT: until the gateway's /readyz answers 200 (90 s; a first start creates the schema).
ready() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 90
while time.time() < deadline:
    try:
        if urllib.request.urlopen("http://127.0.0.1:%s/readyz" % sys.argv[1], timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.3)
sys.exit(1)
PY
}

: >"$dir/nodes.env"
# One after the other: the first start on an empty database creates the schema and the admin.
for node in a b; do
  https=$(free_port) rdp=$(free_port) ops=$(free_port)
  mkdir -p "$dir/node-$node"
  cat >"$dir/node-$node/portcullis.toml" <<TOML
# Gateway $node of deploy/compose/two-nodes.sh.
data_dir = "$dir/node-$node/data"
shutdown_grace_secs = 10

[http]
listen = "127.0.0.1:$https"

[rdp]
listen = "127.0.0.1:$rdp"

[ops]
listen = "127.0.0.1:$ops"

[store]
url = "postgres://portcullis@localhost:$pg_port/portcullis"
password_file = "$dir/secrets/pg-password"
ca_file = "$pg_ca"

[recording.object_store]
url = "s3://recordings/two-nodes"
endpoint = "$s3_endpoint"
access_key_id = "$s3_access"
secret_access_key_file = "$dir/secrets/s3-secret"
upload_every_secs = 2
TOML
  # Its own session, so it outlives this script and a closed terminal.
  PORTCULLIS_SECRET_KEY=$(head -n 1 "$dir/secrets/secret-key") \
    PORTCULLIS_ADMIN_PASSWORD=$(head -n 1 "$dir/secrets/admin-password") \
    setsid "$bin" --config "$dir/node-$node/portcullis.toml" serve \
    </dev/null >"$dir/node-$node/gateway.log" 2>&1 &
  echo $! >"$dir/node-$node/gateway.pid"
  if ! ready "$ops"; then
    echo "gateway $node did not become ready; its log:" >&2
    tail -n 30 "$dir/node-$node/gateway.log" >&2
    false
  fi
  upper=$(echo "$node" | tr a-z A-Z)
  printf 'NODE_%s_HTTPS=https://127.0.0.1:%s\nNODE_%s_RDP=127.0.0.1:%s\nNODE_%s_OPS=http://127.0.0.1:%s\n' \
    "$upper" "$https" "$upper" "$rdp" "$upper" "$ops" >>"$dir/nodes.env"
  echo "NODE $node https=https://127.0.0.1:$https rdp=127.0.0.1:$rdp ops=http://127.0.0.1:$ops"
done
trap - ERR
echo "admin password: $dir/secrets/admin-password; stop with: $0 stop $dir"
