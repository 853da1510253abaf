#!/usr/bin/env bash
# poold under a real systemd (../shared/systemd-harness.sh boots systemd 252 as PID 1 in
# private namespaces). Run from the project root, as root, after `swift build`.
# Prints one line per check and ends with "N passed, M failed".
set -uo pipefail
H=${SDH:-../shared/systemd-harness.sh}
BIN=${BIN:-$(swift build --show-bin-path)}
WORK=.build/systemd-it
passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
inside() { "$H" exec "$@" </dev/null; }
prop() { inside systemctl show -p "$1" --value "${2:-poold.service}"; }
now_ms() { date +%s%3N; }

mkdir -p "$WORK"

# The notify sequence without systemd, through ../shared/notify_listener.py.
L=${NOTIFY_LISTENER:-$(dirname "$H")/notify_listener.py}
cat > "$WORK/notify.toml" <<TOML
[daemon]
control_socket = "$PWD/$WORK/notify.sock"
[[pool]]
name = "main"
path = "$PWD/$WORK/notify.db"
TOML
listen() {
  python3 "$L" "@poold-it-$$" --timeout 10 --wait-for READY=1 --wait-for STATUS --wait-for WATCHDOG=1 \
    --watchdog-usec 400000 -- "$BIN/poold" --config "$WORK/notify.toml" >"$WORK/notify.jsonl" 2>&1
}
check "notify_listener sees READY=1 with STATUS, and WATCHDOG=1" listen

export SDH_NAME=poold-it-$$
eval "$("$H" up)" || { echo "0 passed, 1 failed"; exit 1; }
trap '"$H" down >/dev/null 2>&1' EXIT

for b in poold poolctl; do "$H" copy-in "$BIN/$b" "/usr/local/bin/$b" >/dev/null; done
inside systemd-sysusers "$PWD/deploy/poold.sysusers" >/dev/null 2>&1
inside systemd-tmpfiles --create "$PWD/deploy/poold.tmpfiles" >/dev/null 2>&1
cat > "$WORK/poold.toml" <<'TOML'
[daemon]
control_socket = "/run/poold/control.sock"
shutdown_grace = "5s"
socket_mode = "0666"
socket_group = "poold"

[metrics]
listen = "127.0.0.1:9187"

[[pool]]
name = "main"
path = "/var/lib/poold/main.db"
min = 1
max = 4
allow_adhoc = true

[[pool]]
name = "workers"
kind = "exec"
command = ["/usr/bin/python3", "/usr/local/lib/poold-it/ledger.py"]
min = 1
max = 1
environment = { POOLD_TEST_LEDGER = "/run/poold/ledger.jsonl" }

[[pool]]
name = "intruders"
kind = "exec"
command = ["/usr/bin/python3", "/usr/local/lib/poold-it/intruder.py"]
min = 0
max = 1
TOML
sed 's/max = 4/max = "lots"/' "$WORK/poold.toml" > "$WORK/bad.toml"
inside install -D -m 0755 "$PWD/Tests/workers/ledger.py" /usr/local/lib/poold-it/ledger.py
inside install -D -m 0755 "$PWD/Tests/workers/intruder.py" /usr/local/lib/poold-it/intruder.py
inside install -D -m 0644 "$PWD/$WORK/poold.toml" /etc/poold/poold.toml
mkdir -p "$WORK/dropin"
printf '[Service]\nWatchdogSec=1s\nTimeoutAbortSec=1s\n' > "$WORK/dropin/watchdog.conf"
# The unit wants poold.socket, so systemd makes the socket: opened to anyone here (socket_mode
# is poold's own choice only when it binds the socket itself), as an operator would with a drop-in.
printf '[Socket]\nSocketMode=0666\n' > "$WORK/dropin/open.conf"
"$H" install-unit deploy/poold.service deploy/poold.socket "$WORK/dropin/open.conf:poold.socket.d/open.conf" >/dev/null

check "systemd-analyze verify prints nothing" test -z "$(inside systemd-analyze verify --man=no "$PWD/deploy/poold.service" 2>&1)"
exposure=$(inside systemd-analyze security --offline=true "$PWD/deploy/poold.service" 2>&1 | sed -n 's/.*exposure level for poold.service: \([0-9.]*\).*/\1/p')
check "exposure $exposure <= 1.5" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.5) }'

t0=$(now_ms); inside systemctl start poold.service; t1=$(now_ms)
echo "# start -> READY: $((t1 - t0)) ms"
check "active after start" test "$(prop ActiveState)" = active
check "StatusText says ready" bash -c "[[ '$(prop StatusText)' == ready* ]]"
P="poolctl --socket /run/poold/control.sock"
check "a job runs" inside $P run main "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"
inside $P run main "INSERT INTO kv VALUES (1, 'one')" >/dev/null
sleep 0.3
# The scrape endpoint under the hardened unit (IPAddressAllow=localhost): served on loopback.
check "/metrics on 127.0.0.1:9187 has the pool's series" bash -c "\"$H\" exec curl -sf http://127.0.0.1:9187/metrics </dev/null | grep -q '^poold_jobs_total{pool=\"main\",outcome=\"succeeded\"} 2'"
check "/healthz says ready" bash -c "[ \"\$(\"$H\" exec curl -s http://127.0.0.1:9187/healthz </dev/null)\" = ready ]"
check "journal has the job's fields" bash -c "\"$H\" exec journalctl -u poold POOLD_OUTCOME=succeeded -o json </dev/null | grep -q '\"POOLD_POOL\":\"main\"'"
check "lifecycle entries carry MESSAGE_IDs" bash -c "\"$H\" exec journalctl -u poold MESSAGE_ID=44a6edeb636e4471bc56918dad862c90 -o cat </dev/null | grep -q ready"
# The catalog explains them: installed where `make install` puts it, indexed, shown by -x.
inside install -D -m 0644 "$PWD/deploy/poold.catalog" /usr/lib/systemd/catalog/poold.catalog
inside journalctl --update-catalog
check "journalctl -x explains poold's entries from its catalog" \
  bash -c "\"$H\" exec journalctl -x -u poold </dev/null | grep -q 'poold serves its control socket with 3 pools'"

check "systemctl reload with a good config succeeds" inside systemctl reload poold.service
inside install -m 0644 "$PWD/$WORK/bad.toml" /etc/poold/poold.toml
check "systemctl reload with a bad config fails" bash -c "! \"$H\" exec systemctl reload poold.service </dev/null >/dev/null 2>&1"
check "still active and serving after the bad reload" inside $P status
inside install -m 0644 "$PWD/$WORK/poold.toml" /etc/poold/poold.toml

# Roles for real users under the unit (default [access]): a member of group poold submits, a
# user in no list only observes.
inside useradd --no-create-home --shell /usr/sbin/nologin --groups poold poold-it-member
inside useradd --no-create-home --shell /usr/sbin/nologin poold-it-stranger
as() { local user=$1; shift; inside setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }
check "a member of group poold may run a job" as poold-it-member $P run main "SELECT 1"
check "a user in no list may observe" as poold-it-stranger $P status
check "a user in no list may not run a job" bash -c "\"$H\" exec setpriv --reuid=poold-it-stranger --regid=poold-it-stranger --init-groups -- $P --json run main 'SELECT 1' </dev/null | grep -q '\"unauthorized\"'"

# Ad-hoc SQL from a submitter who is not root, under the unit: the published fts3_tokenizer
# crash is refused, ATTACH cannot reach another file, and poold stays up.
check "the fts3_tokenizer crash is refused" bash -c "\"$H\" exec setpriv --reuid=poold-it-member --regid=poold-it-member --init-groups -- $P --json run main \"SELECT fts3_tokenizer('simple', x'4141414141414141')\" </dev/null | grep -q 'not authorized'"
check "ATTACH is refused" bash -c "\"$H\" exec setpriv --reuid=poold-it-member --regid=poold-it-member --init-groups -- $P --json run main \"ATTACH DATABASE '/var/lib/poold/other.db' AS o\" </dev/null | grep -q 'not authorized'"
check "poold is still active after the sandbox probes" test "$(prop ActiveState)" = active
check "ATTACH created no file" inside test ! -e /var/lib/poold/other.db

# A worker runs as poold's own user, which gets no role for being it: driven by a submitter's
# input, it may observe, not pause a pool.
intrude() { as poold-it-member $P --json run intruders --input "{\"socket\": \"/run/poold/control.sock\", \"request\": $1}"; }
check "a worker connecting back may not pause a pool" bash -c "$(declare -f as intrude inside); H='$H' P='$P'; intrude '{\"op\": \"pause\"}' | grep -q '\"unauthorized\"'"
check "a worker connecting back may not run a job" bash -c "$(declare -f as intrude inside); H='$H' P='$P'; intrude '{\"op\": \"run\", \"pool\": \"main\", \"sql\": \"SELECT 1\"}' | grep -q '\"unauthorized\"'"
check "a worker connecting back may observe" bash -c "$(declare -f as intrude inside); H='$H' P='$P'; intrude '{\"op\": \"ping\"}' | grep -q '\"output\":{\"id\":null,\"ok\":true}'"

# An exec pool under the unit: a job runs on a worker (as the poold user, not root); when
# poold is killed mid-job, neither the worker nor a process it started outlives it.
check "an exec job runs under the unit" bash -c "\"$H\" exec $P run workers --input '{\"mark\": \"unit\"}' </dev/null | grep -q unit"
check "the worker runs as poold, not root" bash -c "[[ \$(\"$H\" exec ps -o user= -C python3 </dev/null | sort -u) == poold ]]"
inside sh -c "($P run workers --input '{\"child\": true, \"sleep\": 30}' >/dev/null 2>&1 &); sleep 1"
child=$(inside sh -c 'sed -n "s/.*\"child_pid\": \([0-9]*\).*/\1/p" /run/poold/ledger.jsonl | tail -1')
check "the worker started a child ($child)" inside test -n "$child" -a -d "/proc/$child"
inside systemctl kill --kill-whom=main --signal=KILL poold.service
gone=no
for _ in $(seq 50); do sleep 0.1; inside test -d "/proc/$child" || { gone=yes; break; }; done
check "the worker's child is gone after SIGKILL of poold" test "$gone" = yes
for _ in $(seq 50); do [ "$(prop ActiveState)" = active ] && break; sleep 0.2; done
check "Restart= brought poold back after the SIGKILL" test "$(prop ActiveState)" = active

# Stop with 8 jobs in flight: each client gets an answer, the unit stops cleanly.
inside sh -c "for i in 1 2 3 4 5 6 7 8; do ($P run main \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c\" >/dev/null 2>&1; echo \$? > /tmp/job.\$i) & done; sleep 0.3"
t0=$(now_ms); inside systemctl stop poold.service; t1=$(now_ms)
echo "# stop with 8 jobs in flight -> inactive: $((t1 - t0)) ms"
check "stop Result=success" test "$(prop Result)" = success
check "stop exit status 0" test "$(prop ExecMainStatus)" = 0
check "no process left in the unit's cgroup" inside test ! -e /sys/fs/cgroup/system.slice/poold.service
sleep 0.3
codes=$(inside sh -c 'cat /tmp/job.* 2>/dev/null | tr "\n" " "')
check "all 8 clients answered (exit 0 or 1, never 3/4): $codes" bash -c "[[ \$(echo $codes | wc -w) == 8 && ' $codes ' != *' 3 '* && ' $codes ' != *' 4 '* ]]"

inside systemctl start poold.service
t0=$(now_ms); inside systemctl stop poold.service; t1=$(now_ms)
echo "# idle stop -> inactive: $((t1 - t0)) ms"

# Watchdog: a stopped (SIGSTOP) daemon is killed and restarted.
"$H" install-unit deploy/poold.service "$WORK/dropin/watchdog.conf:poold.service.d/watchdog.conf" >/dev/null
inside systemctl start poold.service
pid=$(prop MainPID)
inside kill -STOP "$pid"
restarted=no
for _ in $(seq 100); do
  sleep 0.2
  if [ "$(prop NRestarts)" -ge 1 ] 2>/dev/null && [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" != "$pid" ]; then restarted=yes; break; fi
done
check "watchdog killed the stopped daemon and Restart= brought it back" test "$restarted" = yes
check "journal says Watchdog timeout" bash -c "\"$H\" exec journalctl -u poold -o cat </dev/null | grep -q -i 'watchdog timeout'"
check "the unit failed with Result=watchdog before the restart" bash -c "\"$H\" exec journalctl -u poold -o cat </dev/null | grep -q \"Failed with result 'watchdog'\""
inside systemctl stop poold.service poold.socket

# Socket activation: the first client starts poold.
inside systemctl start poold.socket
check "not running before the first client" test "$(prop ActiveState)" = inactive
check "the first poolctl status starts it" inside $P status
check "active after activation" test "$(prop ActiveState)" = active
inside systemctl stop poold.service poold.socket

# PostgreSQL under the unit (issue 16's client in a real deployment): a cluster of its own inside
# the harness on 127.0.0.1 (SCRAM), require_auth, a pool of one connection, and a submitter who is
# not root sending what the protocol allows. The password is a password_file readable by group
# poold: the harness's systemd 252 cannot set up LoadCredential= for any unit (its credential
# directory stays empty and root's, even for `systemd-run -p LoadCredential=…`), so `credential`
# is tested with a $CREDENTIALS_DIRECTORY of the test's making (PostgresTests).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ]; then
  fail "PostgreSQL under the unit: no server installed (scripts/ensure-packages.sh postgresql)"
else
  PGSOCK=/run/poold-it-pg
  inside install -d -o postgres -g postgres -m 0700 /var/lib/poold-it-pg
  inside install -d -o postgres -g postgres -m 0755 "$PGSOCK"
  inside runuser -u postgres -- "$PGBIN/initdb" -D /var/lib/poold-it-pg/data -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null 2>&1
  inside systemd-run --quiet --unit=poold-it-pg --uid=postgres --gid=postgres "$PGBIN/postgres" -D /var/lib/poold-it-pg/data \
    -k "$PGSOCK" -p 5432 -c listen_addresses=127.0.0.1 -c fsync=off
  for _ in $(seq 100); do inside "$PGBIN/pg_isready" -q -h "$PGSOCK" -p 5432 && break; sleep 0.1; done
  PSQL="runuser -u postgres -- $PGBIN/psql -X -q -t -A -h $PGSOCK -p 5432 -U postgres -d postgres"
  inside $PSQL -c "CREATE ROLE app LOGIN PASSWORD 'it-secret'" -c "CREATE DATABASE app OWNER app" >/dev/null
  printf 'it-secret\n' > "$WORK/pg.password"
  inside install -m 0640 -g poold "$PWD/$WORK/pg.password" /etc/poold/pg.password
  cat "$WORK/poold.toml" - > "$WORK/pg.toml" <<'TOML'

[[pool]]
name = "pg"
kind = "postgres"
url = "postgres://app@127.0.0.1:5432/app?sslmode=disable"
password_file = "/etc/poold/pg.password"
require_auth = "scram-sha-256"
application_name = "poold-it"
min = 1
max = 1
acquire_timeout = "1s"
allow_adhoc = true

# Durable queues (issue 18) on a store pool of their own, without ad-hoc SQL.
[[pool]]
name = "pgq"
kind = "postgres"
url = "postgres://app@127.0.0.1:5432/app?sslmode=disable"
password_file = "/etc/poold/pg.password"
require_auth = "scram-sha-256"
application_name = "poold-it"
max = 2

[[job]]
name = "note"
pool = "pgq"
sql = "INSERT INTO notes (n) VALUES ($1::int)"

[[job]]
name = "nap"
pool = "pgq"
sql = "SELECT pg_sleep($1::float8)"

[[queue]]
name = "notes"
store = "pgq"
job = "note"

[[queue]]
name = "naps"
store = "pgq"
job = "nap"
TOML
  inside $PSQL -d app -c "CREATE TABLE notes (n int NOT NULL)" -c "ALTER TABLE notes OWNER TO app" >/dev/null
  inside install -m 0644 "$PWD/$WORK/pg.toml" /etc/poold/poold.toml
  "$H" install-unit deploy/poold.service >/dev/null
  inside systemctl start poold.service
  member() { inside setpriv --reuid=poold-it-member --regid=poold-it-member --init-groups -- $P --json "$@"; }
  out=$(member run pg "SELECT current_user AS who")
  check "a member runs a PostgreSQL job under the unit (password_file, SCRAM, require_auth): $out" grep -q '"app"' <<<"$out"
  out=$(member run pg "COPY (SELECT 1) TO STDOUT")
  check "COPY from a member is a bad request" grep -q '"bad_request"' <<<"$out"
  out=$(member run pg "SELECT generate_series(1, 1000000000)" --timeout 60s)
  check "a billion rows are cut off on the server (bad_request, not a timeout)" grep -q 'more than 100000 rows' <<<"$out"
  out=$(member run pg "SET ROLE postgres")
  check "SET ROLE postgres is the server's refusal" grep -q '"sql_error"' <<<"$out"
  # A durable job from a member who is not root: enqueued, run, its effect in the store, and
  # its queue, id and attempt in the journal's fields; STATUS= counts the queues.
  for _ in $(seq 50); do member queues | grep -q '"store_reachable":true' && break; sleep 0.1; done
  job=$(member enqueue notes 7 | python3 -c 'import json, sys; print(json.load(sys.stdin).get("job_id", ""))')
  for _ in $(seq 50); do member job "$job" | grep -q '"completed"' && break; sleep 0.1; done
  check "a member's durable job $job completes under the unit" bash -c "\"$H\" exec setpriv --reuid=poold-it-member \
    --regid=poold-it-member --init-groups -- $P --json job $job </dev/null | grep -q '\"state\":\"completed\"'"
  check "its effect is in the store" test "$(inside $PSQL -d app -c "SELECT n FROM notes")" = 7
  check "the journal has POOLD_QUEUE, POOLD_DURABLE_JOB_ID and POOLD_ATTEMPT" bash -c "\"$H\" exec journalctl -u poold.service \
    -o json POOLD_QUEUE=notes POOLD_DURABLE_JOB_ID=$job POOLD_ATTEMPT=1 </dev/null | grep -q 'durable job completed'"
  check "STATUS= mentions the queues ($(prop StatusText))" bash -c "[[ '$(prop StatusText)' == *'queues 2'* ]]"
  # A durable job still running at the stop below is handed back: available, its attempt not counted.
  nap=$(member enqueue naps 30 | python3 -c 'import json, sys; print(json.load(sys.stdin).get("job_id", ""))')
  for _ in $(seq 50); do member job "$nap" | grep -q '"running"' && break; sleep 0.1; done
  # The only connection busy with a long job: the next one waits, then is refused; SIGTERM
  # answers the long job, stops its statement on the server and leaves no connection behind.
  inside sh -c "(setpriv --reuid=poold-it-member --regid=poold-it-member --init-groups -- $P run pg 'SELECT pg_sleep(30)' \
    >/dev/null 2>&1; echo \$? > /tmp/pg-long.rc) & sleep 0.5"
  out=$(member run pg "SELECT 1")
  check "with the one connection busy, the next job gets pool_timeout" grep -q '"pool_timeout"' <<<"$out"
  check "the long job runs on the server" test "$(inside $PSQL -c "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")" = 1
  inside systemctl stop poold.service
  check "stop with a PostgreSQL job in flight: Result=success" test "$(prop Result)" = success
  for _ in $(seq 30); do inside test -s /tmp/pg-long.rc && break; sleep 0.1; done
  check "the long job's client was answered (exit $(inside cat /tmp/pg-long.rc 2>/dev/null))" \
    bash -c "[[ \"\$(\"$H\" exec cat /tmp/pg-long.rc </dev/null)\" == 1 ]]"
  left=$(inside $PSQL -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poold-it' OR query LIKE 'SELECT pg_sleep%'")
  check "no poold connection and no statement left on the server after the stop ($left)" test "$left" = 0
  handed=$(inside $PSQL -d app -c "SELECT state || ' ' || attempt FROM poold.jobs WHERE id = ${nap:-0}")
  check "the running durable job was handed back at the stop ($handed)" test "$handed" = "available 0"
  inside systemctl stop poold-it-pg.service
fi

# The Debian package (scripts/build-deb.sh, the layout and maintainer scripts of `make deb`,
# packing this debug build: the toolchain it links to is visible inside the harness), installed
# with dpkg on a system whose units are the package's own.
if deb=$(DEB_CONFIG=debug DEB_OUT="$WORK/deb" scripts/build-deb.sh 2>"$WORK/deb.log"); then
  inside systemctl stop poold.service poold.socket
  inside rm -rf /etc/systemd/system/poold.service /etc/systemd/system/poold.service.d /etc/systemd/system/poold.socket \
    /etc/poold/poold.toml
  inside systemctl daemon-reload
  check "dpkg -i installs the package" inside dpkg -i "$PWD/$deb"
  fragment=$(prop FragmentPath)  # /lib is /usr/lib on merged-/usr systems, and systemd may say either
  check "its units are vendor units ($fragment)" bash -c "[[ '$fragment' == /usr/lib/systemd/system/poold.service || '$fragment' == /lib/systemd/system/poold.service ]]"
  check "its config is a conffile, readable by group poold only" \
    test "$(inside stat -c '%a %G' /etc/poold/poold.toml)" = "640 poold"
  inside systemctl start poold.service
  check "the packaged poold starts" test "$(prop ActiveState)" = active
  check "the packaged poolctl runs a job" bash -c "\"$H\" exec /usr/bin/poolctl run main 'SELECT 40 + 2' </dev/null | grep -q 42"
  check "its man page is found" inside man -w poold.toml
  check "dpkg -r removes it" inside dpkg -r poold
  check "the service is stopped on removal" test "$(prop ActiveState)" != active
  check "the binaries are gone, the conffile stays" bash -c "\"$H\" exec test ! -e /usr/bin/poold </dev/null && \"$H\" exec test -e /etc/poold/poold.toml </dev/null"
else
  fail "scripts/build-deb.sh: $(tail -n 3 "$WORK/deb.log")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
