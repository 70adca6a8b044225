#!/usr/bin/env bash
# Makes PostgreSQL, MariaDB, Redis and RabbitMQ (with its management API)
# available for rotary's tests on a Debian machine: installs them if missing, starts them if stopped, waits
# until each answers, and prepares what the tests use. Safe to run again.
#
# PostgreSQL on the CI machines trusts every local connection, so a test
# that "logs in with the new password" would prove nothing. This script
# creates the NOLOGIN group role rotary_pwcheck and puts scram-sha-256 rules
# for its members at the top of pg_hba.conf: every role the tests rotate is
# made a member, so PostgreSQL checks its password (and refuses a wrong one).
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

wait_for() { # name, tries, command...
  local name=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$name did not answer after $((tries / 2)) s"
}

need_install=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_install+=(postgresql)
# pgbench (Debian ships it with the server, postgresql-NN): BenchmarkRotateAdmin
# in rotators/postgres measures the connection rate with `pgbench -C`.
command -v pgbench >/dev/null 2>&1 || need_install+=(postgresql-contrib)
[ -x /usr/sbin/mariadbd ] || need_install+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
command -v rabbitmq-server >/dev/null 2>&1 || need_install+=(rabbitmq-server)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
if [ ${#need_install[@]} -gt 0 ]; then
  log "installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need_install[@]}" postgresql-client mariadb-client redis-tools
fi

# --- PostgreSQL -------------------------------------------------------------
pgver=$(ls /etc/postgresql | sort -V | tail -n1)
[ -n "$pgver" ] || die "no PostgreSQL cluster under /etc/postgresql"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL $pgver"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$pgver" main start || true
fi
wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1 -p 5432

pgsql() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; else sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 "$@"; fi; }

pgsql -d postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rotary_pwcheck') THEN
    CREATE ROLE rotary_pwcheck NOLOGIN;
  END IF;
END \$\$;"
for db in test root; do
  if [ -z "$(pgsql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    pgsql -d postgres -c "CREATE DATABASE \"$db\""
  fi
done
if [ -z "$(pgsql -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = 'root'")" ]; then
  pgsql -d postgres -c "CREATE ROLE root SUPERUSER LOGIN"
fi

hba=$(pgsql -d postgres -Atc 'SHOW hba_file')
if ! grep -q '^# rotary-tests begin' "$hba"; then
  log "adding password checks for members of rotary_pwcheck to $hba"
  tmp=$(mktemp)
  {
    echo '# rotary-tests begin: members of rotary_pwcheck must give their password'
    echo 'host all +rotary_pwcheck 127.0.0.1/32 scram-sha-256'
    echo 'host all +rotary_pwcheck ::1/128 scram-sha-256'
    echo 'host all postgres 127.0.0.1/32 trust'
    echo 'host all root 127.0.0.1/32 trust'
    echo '# rotary-tests end'
    cat "$hba"
  } >"$tmp"
  cat "$tmp" >"$hba"
  rm -f "$tmp"
  pgsql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
fi
pgsql -d postgres -c "ALTER SYSTEM SET password_encryption = 'scram-sha-256'" >/dev/null
pgsql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
wait_for "PostgreSQL as postgres over TCP" 20 psql -X -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1'

# --- MariaDB ----------------------------------------------------------------
if ! mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && ! mysqladmin -uroot ping >/dev/null 2>&1; then
  log "starting MariaDB"
  $SUDO mkdir -p /run/mysqld
  $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for MariaDB 60 mysqladmin -uroot ping
if ! mysql -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; then
  log "letting root log in over TCP without a password (test machine only)"
  mysql -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
fi
wait_for "MariaDB over TCP" 20 mysql -h 127.0.0.1 -uroot -e 'SELECT 1'
mysql -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'

# --- Redis ------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  log "starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis 60 sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'

# --- RabbitMQ ---------------------------------------------------------------
# The example rabbitmq plugin's tests log in over AMQP on 127.0.0.1:5672 and
# administer users through the management HTTP API on 127.0.0.1:15672, both as
# guest/guest (RabbitMQ lets guest in from loopback only).
amqp_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }
mgmt_up() { curl -fs -m 2 -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null; }
rabbit_conf=/etc/rabbitmq/rabbitmq.conf
if ! amqp_up; then
  # Listen on loopback only, for AMQP and the management API, from this
  # start on (a running node is never restarted for it).
  $SUDO mkdir -p /etc/rabbitmq
  $SUDO touch "$rabbit_conf"
  grep -q '^listeners\.tcp\.' "$rabbit_conf" || echo 'listeners.tcp.local = 127.0.0.1:5672' | $SUDO tee -a "$rabbit_conf" >/dev/null
  grep -q '^management\.tcp\.ip' "$rabbit_conf" || echo 'management.tcp.ip = 127.0.0.1' | $SUDO tee -a "$rabbit_conf" >/dev/null
  log "starting RabbitMQ"
  $SUDO rabbitmq-server -detached
fi
wait_for "RabbitMQ (AMQP)" 180 amqp_up
if ! mgmt_up; then
  log "enabling rabbitmq_management"
  $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
wait_for "RabbitMQ management API" 120 mgmt_up

# --- promtool ---------------------------------------------------------------
# e2e/deploy_test.go checks deploy/prometheus/ with `promtool check rules` and
# `promtool test rules`. Debian's prometheus package ships promtool beside the
# server; the server is not one of the test services: it must not be left
# running (or enabled) on :9090 after the install.
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's postinst from starting the server: an existing
  # policy-rc.d is left alone, else a temporary one says "no" (exit 101).
  policy_made=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends prometheus ||
    { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends prometheus; }
  if [ -n "$policy_made" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  command -v promtool >/dev/null 2>&1 || die "promtool missing after installing prometheus"
fi
# Whether installed now or earlier: the package's server is stopped and
# disabled (it is ours, not a shared service).
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ] && pgrep -x -u prometheus prometheus >/dev/null 2>&1; then
  $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

log "PostgreSQL, MariaDB, Redis and RabbitMQ are ready; promtool is installed"
