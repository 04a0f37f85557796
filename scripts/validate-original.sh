#!/usr/bin/env bash
# Validates every version of every pipeline file in the history of a clone of the original
# .NET FlowEngine, each from the root of the repository as the original's README runs them
# (issue 12's re-verification).
#
#   scripts/validate-original.sh PATH/TO/ORIGINAL-CLONE [FLOWENGINE-BINARY]
#
# Each distinct version (path and blob) is written at its path into a copy of the clone's
# working tree and checked with `flowengine validate`; when that fails only because the
# files it names are not on this machine (exit 4: `C:\...` paths, `/data/prod/...`), it is
# checked again with `--config-only`. Prints one line per version and a count.
set -uo pipefail
ORIG=$(cd "${1:?usage: validate-original.sh ORIGINAL-CLONE [BINARY]}" && pwd)
FE=${2:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/flowengine}
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
cp -r "$ORIG/." "$ROOT/"
rm -rf "$ROOT/.git"
pass=0
fail=0
# Every (commit, path) at which a .yaml/.yml file changed, newest first; one per blob.
seen=""
while read -r commit path; do
  blob=$(git -C "$ORIG" rev-parse "$commit:$path" 2>/dev/null) || continue
  case " $seen " in *" $blob "*) continue ;; esac
  seen="$seen $blob"
  mkdir -p "$ROOT/$(dirname "$path")"
  saved=""
  [ -f "$ROOT/$path" ] && saved=$(mktemp) && cp "$ROOT/$path" "$saved"
  git -C "$ORIG" cat-file blob "$blob" >"$ROOT/$path"
  mode=plain
  out=$(cd "$ROOT" && "$FE" validate "$path" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq 4 ]; then
    mode=config-only
    out=$(cd "$ROOT" && "$FE" validate --config-only "$path" 2>&1 >/dev/null)
    rc=$?
  fi
  if [ $rc -eq 0 ]; then pass=$((pass + 1)); result=OK; else fail=$((fail + 1)); result="FAIL($rc)"; fi
  printf '%-48s %.7s %-12s %-8s %s\n' "$path" "$commit" "$mode" "$result" "$(printf '%s\n' "$out" | grep '^error' | head -1)"
  if [ -n "$saved" ]; then mv "$saved" "$ROOT/$path"; else rm -f "$ROOT/$path"; fi
done < <(git -C "$ORIG" log --all --format='commit %H' --name-only --diff-filter=AM -- '*.yaml' '*.yml' |
  awk '$1 == "commit" && NF == 2 { c = $2; next } NF { print c, $0 }')
echo "versions: $((pass + fail)), validated: $pass, failed: $fail"
