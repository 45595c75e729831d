#!/bin/sh
# Write PgBouncer's configuration from the environment, then run it. The password file lives in the container
# only (never in the image); PostgreSQL checks the password (scram-sha-256) through PgBouncer's auth_file.
set -eu
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${POSTGRES_HOST:=postgres}"
umask 077
printf '"%s" "%s"\n' "$POSTGRES_USER" "$POSTGRES_PASSWORD" > /etc/pgbouncer/userlist.txt
cat > /etc/pgbouncer/pgbouncer.ini <<INI
[databases]
* = host=${POSTGRES_HOST} port=5432

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir = /var/run/postgresql
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = ${POSTGRES_USER}
stats_users = ${POSTGRES_USER}
pool_mode = ${PGBOUNCER_POOL_MODE:-transaction}
max_client_conn = ${PGBOUNCER_MAX_CLIENT_CONN:-400}
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
reserve_pool_size = ${PGBOUNCER_RESERVE_POOL_SIZE:-5}
max_db_connections = ${PGBOUNCER_MAX_DB_CONNECTIONS:-40}
server_reset_query = DISCARD ALL
# After a failed server login PgBouncer waits server_login_retry before it tries again. Its default, 15 s, is
# Patroni's ttl in the ha stack: a promotion a moment after PgBouncer's retry cost another 15 s of no writes (and,
# with no server connection left, PgBouncer fails calls at once until a login succeeds). 1 s: writes resume about a
# second after the promotion (benchmarks/results/20261127T1540Z-pgbouncer-login-retry-ab/).
server_login_retry = 1
ignore_startup_parameters = extra_float_digits,options
logfile =
pidfile =
INI
exec "$@"
