# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this
# Shared settings and helpers for the local e2e stack scripts (sourced, not run).
# Every setting has a fixed default and a WRT_STACK_* override, so tests and CI agree on
# endpoints without a config file.

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Where installed artefacts live (kept between runs) and where runtime state lives.
STACK_HOME="${WRT_STACK_HOME:-$HOME/.cache/wrt/stack}"
STACK_RUN="${WRT_STACK_RUN:-/tmp/wrt-stack}"

# Pinned versions. Kafka and Debezium are pinned in pom.xml (read back below) so Maven and
# these scripts cannot disagree. MinIO has no semver tags on the Go proxy, so it is pinned to
# a module pseudo-version (commit 7aac2a2c5b7c, 2026-02-12).
MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# The fault proxy the fault tests put between wrt and a store (runtime/cli/tests/e2e_faults.rs);
# v2.5.0 is the newest the Go module proxy serves under this path.
TOXIPROXY_MODULE="github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION="v2.5.0"
pom_property() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$STACK_DIR/pom.xml" | head -n1; }
KAFKA_VERSION="$(pom_property kafka.version)"
DEBEZIUM_VERSION="$(pom_property debezium.version)"

# Installed layout: one directory per version, so a version bump installs beside the old one.
KAFKA_LIB="$STACK_HOME/kafka-$KAFKA_VERSION/lib"
DEBEZIUM_PLUGINS="$STACK_HOME/debezium-$DEBEZIUM_VERSION/plugins"
MINIO_BIN="$STACK_HOME/minio-$MINIO_VERSION/minio"
TOXIPROXY_BIN="$STACK_HOME/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"
# Debian puts the server in /usr/sbin, which is not on a non-root PATH.
MARIADBD="$(command -v mariadbd || echo /usr/sbin/mariadbd)"

# Endpoints: loopback only.
HOST=127.0.0.1
MARIADB_PORT="${WRT_STACK_MARIADB_PORT:-3307}"
KAFKA_PORT="${WRT_STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${WRT_STACK_KAFKA_CONTROLLER_PORT:-9093}"
# The authenticated listener (SASL_SSL, SCRAM-SHA-512/256) beside the plaintext one, which
# Connect and the inter-broker traffic keep using.
KAFKA_SCRAM_PORT="${WRT_STACK_KAFKA_SCRAM_PORT:-9094}"
# A plaintext listener for fault tests: the broker binds the upstream port but advertises the
# proxied one, where a test starts its fault proxy (Toxiproxy), so every connection a client
# makes, bootstrap and after, goes through the proxy. Nothing listens on it otherwise.
KAFKA_PROXIED_PORT="${WRT_STACK_KAFKA_PROXIED_PORT:-9095}"
KAFKA_PROXIED_UPSTREAM_PORT="${WRT_STACK_KAFKA_PROXIED_UPSTREAM_PORT:-9096}"
CONNECT_PORT="${WRT_STACK_CONNECT_PORT:-8083}"
MINIO_PORT="${WRT_STACK_MINIO_PORT:-9000}"
MINIO_CONSOLE_PORT="${WRT_STACK_MINIO_CONSOLE_PORT:-9001}"

# Credentials of the local stack (test-only, loopback-only).
MARIADB_CDC_USER=debezium
MARIADB_CDC_PASSWORD=dbz
MARIADB_TEST_USER=wrt        # full rights: tests create their own databases with it
MARIADB_TEST_PASSWORD=wrt
MINIO_USER=wrtminio
MINIO_PASSWORD=wrtminio-secret
KAFKA_SCRAM_USER=wrt
KAFKA_SCRAM_PASSWORD=wrt-scram-secret
# The broker's PKCS12 keystore; the client trusts the PEM CA beside it.
KAFKA_TLS_STORE_PASSWORD=wrt-stack-tls

# JVM heaps: small, the machine is shared with cargo builds.
KAFKA_HEAP="${WRT_STACK_KAFKA_HEAP:--Xms256m -Xmx768m}"
CONNECT_HEAP="${WRT_STACK_CONNECT_HEAP:--Xms256m -Xmx1g}"

# How long up waits for each service before giving up.
READY_TIMEOUT="${WRT_STACK_READY_TIMEOUT:-120}"

KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT"
KAFKA_SCRAM_BOOTSTRAP="$HOST:$KAFKA_SCRAM_PORT"
KAFKA_PROXIED_BOOTSTRAP="$HOST:$KAFKA_PROXIED_PORT"
KAFKA_PROXIED_UPSTREAM="$HOST:$KAFKA_PROXIED_UPSTREAM_PORT"
# The self-signed CA and broker certificate, made once per run dir by up.
KAFKA_TLS_DIR="$STACK_RUN/kafka/tls"
KAFKA_CA_FILE="$KAFKA_TLS_DIR/ca.pem"
CONNECT_URL="http://$HOST:$CONNECT_PORT"
MINIO_URL="http://$HOST:$MINIO_PORT"

SERVICES=(mariadb kafka connect minio)

log() { printf '%s %s\n' "[stack]" "$*" >&2; }
die() { printf '%s ERROR: %s\n' "[stack]" "$*" >&2; exit 1; }

# Per-service runtime paths.
svc_dir() { echo "$STACK_RUN/$1"; }
svc_log() { echo "$STACK_RUN/$1/$1.log"; }
svc_pidfile() { echo "$STACK_RUN/$1/$1.pid"; }

# Prints the PID of a service we started if it is still alive. The command line must mention
# the run directory, so a PID recycled by an unrelated process is never taken for ours.
svc_pid() {
  local pidfile pid
  pidfile="$(svc_pidfile "$1")"
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STACK_RUN/$1" || return 1
  echo "$pid"
}

# True if something listens on HOST:port.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

svc_port() {
  case "$1" in
    mariadb) echo "$MARIADB_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;;
    connect) echo "$CONNECT_PORT" ;;
    minio) echo "$MINIO_PORT" ;;
  esac
}

svc_port_var() {
  case "$1" in
    mariadb) echo WRT_STACK_MARIADB_PORT ;;
    kafka) echo WRT_STACK_KAFKA_PORT ;;
    connect) echo WRT_STACK_CONNECT_PORT ;;
    minio) echo WRT_STACK_MINIO_PORT ;;
  esac
}

svc_endpoint() {
  case "$1" in
    mariadb) echo "mysql://$HOST:$MARIADB_PORT (users $MARIADB_TEST_USER/$MARIADB_TEST_PASSWORD, $MARIADB_CDC_USER/$MARIADB_CDC_PASSWORD; database test)" ;;
    kafka) echo "$KAFKA_BOOTSTRAP (PLAINTEXT, KRaft controller on $HOST:$KAFKA_CONTROLLER_PORT); $KAFKA_SCRAM_BOOTSTRAP (SASL_SSL, SCRAM-SHA-512/256 user $KAFKA_SCRAM_USER/$KAFKA_SCRAM_PASSWORD, CA $KAFKA_CA_FILE); $KAFKA_PROXIED_BOOTSTRAP (PLAINTEXT through a test's fault proxy to $KAFKA_PROXIED_UPSTREAM)" ;;
    connect) echo "$CONNECT_URL (Kafka Connect REST, distributed, Debezium $DEBEZIUM_VERSION MariaDB connector)" ;;
    minio) echo "$MINIO_URL (S3, access key $MINIO_USER, secret $MINIO_PASSWORD, region us-east-1)" ;;
  esac
}

# Readiness probes: cheap checks that the service really answers, not just listens.
mariadb_cli() {
  # Root over the unix socket: root has no TCP login, so this works only for the stack owner.
  mariadb --no-defaults --socket="$STACK_RUN/mariadb/mariadb.sock" -uroot "$@"
}
svc_ready() {
  case "$1" in
    mariadb) mariadb_cli -e 'SELECT 1' >/dev/null 2>&1 && port_open "$MARIADB_PORT" ;;
    kafka) port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$(svc_log kafka)" 2>/dev/null ;;
    connect) curl -fsS --max-time 5 "$CONNECT_URL/connector-plugins" 2>/dev/null | grep -q MariaDbConnector &&
      curl -fsS --max-time 5 "$CONNECT_URL/connectors" >/dev/null 2>&1 ;;
    minio) curl -fsS --max-time 5 "$MINIO_URL/minio/health/ready" >/dev/null 2>&1 ;;
  esac
}

# The SCRAM listener answers; up adds it (and the user) once the plaintext one is ready.
kafka_scram_ready() { port_open "$KAFKA_SCRAM_PORT"; }
kafka_proxied_ready() { port_open "$KAFKA_PROXIED_UPSTREAM_PORT"; }

# The Kafka/Connect classpath: every jar of the one lib dir (one version of each Kafka jar).
kafka_classpath() { echo "$KAFKA_LIB/*"; }

# Runs a Kafka CLI tool class (console consumer, topics, …) on the stack's classpath.
kafka_tool() {
  java -Xmx256m -Dlog4j2.configurationFile="$STACK_DIR/conf/log4j2-tools.properties" \
    -cp "$(kafka_classpath)" "$@"
}

require_installed() {
  [[ -x "$MINIO_BIN" && -x "$TOXIPROXY_BIN" && -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" && -d "$DEBEZIUM_PLUGINS" && -x "$MARIADBD" ]] ||
    die "the stack is not installed under $STACK_HOME (versions: Kafka $KAFKA_VERSION, Debezium $DEBEZIUM_VERSION, MinIO $MINIO_VERSION); run tests/stack/install first"
}
