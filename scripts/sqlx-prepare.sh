#!/usr/bin/env bash
# Refreshes .sqlx/, the offline data of the compile-checked queries in shared/src/db, so builds
# (SQLX_OFFLINE=true in .cargo/config.toml) need no database. Run it after changing a query or a
# migration, and commit .sqlx/ with the change. No sqlx-cli needed:
#   1. a throwaway PostgreSQL (.mediaq/pg-sqlx, fsync off) gets the schema the way production does
#      (`mediaq-migrate`: apalis-postgres' schema, then migrations/; that crate has no query, so it
#      builds while queries lack their data);
#   2. mediaq-shared is rebuilt with SQLX_OFFLINE=false and DATABASE_URL set: sqlx-macros then
#      describes each query against the database and writes query-<sha256 of the text>.json into
#      SQLX_OFFLINE_DIR (sqlx-macros-core 0.9, src/query/mod.rs `expand_with`);
#   3. .sqlx/query-*.json is replaced by what this build wrote (stale files go), minus the files of
#      dependencies that ship their own data (apalis-postgres, when cargo rebuilt it in step 2);
#      .sqlx/migrations.sha256 records the schema it was made from (shared/tests/sqlx_offline.rs
#      fails when a migration changes without a refresh);
#   4. mediaq-shared is rebuilt offline from the new data (skip with --no-check).
# About 30 s on 2 cores once `cargo build --workspace --all-targets` has built the dependencies.
source "$(dirname "$0")/lib.sh"
cd "$MEDIAQ_ROOT"

CHECK=1
for arg in "$@"; do
  case "$arg" in
    --no-check) CHECK=0 ;;
    *) die "usage: scripts/sqlx-prepare.sh [--no-check]" ;;
  esac
done

ensure_packages postgresql python3
ensure_rust

# .sqlx/migrations.sha256: the apalis-postgres version (its schema comes with the crate) and the
# SHA-256 of each of migrations/*.sql, in order. shared/tests/sqlx_offline.rs recomputes it.
write_migrations_stamp() {
  {
    echo "# The schema .sqlx/ was described against (scripts/sqlx-prepare.sh writes this file)."
    echo "apalis-postgres $(awk '/^name = "apalis-postgres"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
    (cd migrations && sha256sum -- *.sql)
  } >.sqlx/migrations.sha256
}

PG_DIR=$(outside_dir "$MEDIAQ_ROOT/.mediaq/pg-sqlx")
OUT=$(mktemp -d)
cleanup() {
  stop_local_pg "$PG_DIR"
  rm -rf "$OUT" "$PG_DIR"
}
trap cleanup EXIT
stop_local_pg "$PG_DIR"
rm -rf "$PG_DIR"
MEDIAQ_PG_FSYNC=off start_local_pg "$PG_DIR"

# Every build here selects the whole workspace (--workspace and one target) so that features
# resolve as in `cargo build --workspace --all-targets`: the dependencies built there are reused
# (`-p mediaq-shared` would resolve them differently and build them all again, gigabytes of it).
log "applying the schema (mediaq-migrate)"
# sqlx::migrate! embeds migrations/ at compile time and, on stable Rust, does not notice a new file.
touch shared/migrate/src/lib.rs
cargo build --quiet --locked --workspace --bin mediaq-migrate
"${CARGO_TARGET_DIR:-$MEDIAQ_ROOT/target}/debug/mediaq-migrate"

log "describing the queries of mediaq-shared against the database"
# Macros expand again only when the crate recompiles: make it.
touch shared/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$OUT" cargo build --quiet --locked --workspace --test sql_ownership

# Dependencies that ship offline data (found in cargo's registry sources, by Cargo.lock): their
# files are theirs, not ours.
for pkg in $(awk '/^name = / { n = $3 } /^version = / { v = $3; gsub(/"/, "", n); gsub(/"/, "", v); print n "-" v }' Cargo.lock); do
  for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$pkg"/.sqlx/query-*.json; do
    [ -e "$f" ] && rm -f "$OUT/$(basename "$f")"
  done
done

count=$(find "$OUT" -name 'query-*.json' | wc -l)
[ "$count" -gt 0 ] || die "the build wrote no query data (is SQLX_OFFLINE_DIR honoured?)"
mkdir -p .sqlx
before=$(find .sqlx -name 'query-*.json' | wc -l)
find .sqlx -name 'query-*.json' -delete
cp "$OUT"/query-*.json .sqlx/
write_migrations_stamp
log ".sqlx: $count queries (was $before); $(git status --short --untracked-files=all .sqlx | wc -l) files differ from git"

if [ "$CHECK" = 1 ]; then
  log "checking the offline build"
  touch shared/src/lib.rs
  env -u DATABASE_URL SQLX_OFFLINE=true cargo build --quiet --locked --workspace --test sql_ownership
fi
log "done: commit .sqlx/ with your change"
