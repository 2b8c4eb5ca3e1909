# Source me: install (if needed) and start Debian's PostgreSQL on loopback, with a role and a database
# for the multi-worker optimisation tests; exports PXP_BENCH_TEST_POSTGRES.
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
pg_lsclusters -h | grep -q "^$pg_version *main " || pg_createcluster "$pg_version" main >/dev/null
pg_ctlcluster "$pg_version" main status >/dev/null 2>&1 || pg_ctlcluster "$pg_version" main start
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
pg_sql() { su postgres -c "psql -qtAc \"$1\""; }
[ "$(pg_sql "SELECT 1 FROM pg_roles WHERE rolname='pxp'")" = 1 ] || pg_sql "CREATE ROLE pxp LOGIN PASSWORD 'pxp'"
[ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname='pxp_bench_test'")" = 1 ] || su postgres -c "createdb -O pxp pxp_bench_test"
export PXP_BENCH_TEST_POSTGRES="postgresql://pxp:pxp@127.0.0.1:5432/pxp_bench_test"
