#!/usr/bin/env bash
# Checks that ferrotrue's schema (actors/src/pg/migrations, applied by `ferrotrue db migrate`) is
# the schema GoTrue's own migrations produce: applies both to scratch databases of a throw-away
# cluster and diffs their catalogs (tests/pg/catalog.sql) and function bodies (whitespace and
# case ignored). Run it when GoTrue adds migrations. GoTrue's files are read where they are and
# never copied into this repository.
#
#   tests/pg/compare_with_gotrue.sh GOTRUE_REPO [NAMESPACE]
#
# GOTRUE_REPO: a supabase/auth checkout, or a bare clone (its HEAD is read). Needs
# target/debug/ferrotrue (cargo build). Exit 0 when the catalogs are identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=${1:?usage: compare_with_gotrue.sh GOTRUE_REPO [NAMESPACE]}
ns=${2:-auth}
work=$(mktemp -d)
dir=$(tests/pg/cluster.sh start)
trap 'tests/pg/cluster.sh stop "$dir"; rm -rf "$work"' EXIT
url=$(tests/pg/cluster.sh url "$dir")
base=${url%/*}
db() { echo "$base/$1?sslmode=disable"; }

mkdir -p "$work/gotrue"
if [ -d "$repo/migrations" ]; then
  cp "$repo"/migrations/*.up.sql "$work/gotrue/"
else
  for f in $(git -C "$repo" ls-tree --name-only HEAD migrations/ | grep '\.up\.sql$'); do
    git -C "$repo" show "HEAD:$f" >"$work/gotrue/$(basename "$f")"
  done
fi
psql -q "$(db postgres)" -c 'CREATE DATABASE gotrue' -c 'CREATE DATABASE ferrotrue'

# GoTrue's migrator (pop): each file in version order, in its own transaction, the namespace
# substituted and first on the search path (as for supabase_auth_admin), then its version recorded.
psql -q "$(db gotrue)" -c "CREATE SCHEMA $ns"
for f in $(ls "$work"/gotrue/*.up.sql | sort); do
  version=$(basename "$f" | cut -d_ -f1)
  {
    echo "BEGIN; SET LOCAL search_path = $ns;"
    sed "s/{{ *index .Options \"Namespace\" *}}/$ns/g" "$f"
    echo ";"
    echo "INSERT INTO $ns.schema_migrations (version) VALUES ('$version'); COMMIT;"
  } | psql -q -v ON_ERROR_STOP=1 "$(db gotrue)" >/dev/null 2>"$work/psql.err" \
    || { cat "$work/psql.err" >&2; echo "GoTrue's $f failed" >&2; exit 1; }
done

GOTRUE_DB_NAMESPACE=$ns target/debug/ferrotrue db migrate --url "$(db ferrotrue)"

for d in gotrue ferrotrue; do
  psql -At -v ns="$ns" "$(db $d)" -f tests/pg/catalog.sql >"$work/$d.catalog"
  psql -At -v ns="$ns" "$(db $d)" -c "SELECT p.proname || ': ' || regexp_replace(lower(p.prosrc), '[\s()]+', '', 'g')
    FROM pg_proc p WHERE p.pronamespace = '$ns'::regnamespace ORDER BY 1" >"$work/$d.functions"
  psql -At "$(db $d)" -c "SELECT version FROM $ns.schema_migrations ORDER BY 1" >"$work/$d.versions"
done
echo "catalog: $(wc -l <"$work/gotrue.catalog") facts from GoTrue's $(ls "$work"/gotrue | wc -l) migrations"
status=0
diff -u "$work/gotrue.catalog" "$work/ferrotrue.catalog" || status=1
diff -u "$work/gotrue.functions" "$work/ferrotrue.functions" || status=1
diff -u "$work/gotrue.versions" "$work/ferrotrue.versions" || status=1
[ "$status" = 0 ] && echo "identical: tables, columns, constraints, indexes, types, functions, RLS, grants, versions"
exit "$status"
