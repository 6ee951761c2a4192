#!/usr/bin/env bash
# The README tour and its clinical workflow, in order, twice, on a fresh clone — with `npm start` run twice first — and every
# command must exit 0. Usage: bash tests/tour/run.sh [REPO]   (default: this checkout)
# It clones REPO (committed state) into a temporary folder, so nothing of the checkout is touched.
set -euo pipefail
repo="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/osteo-tour-XXXXXX")"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/osteo"
cd "$work/osteo"

step() {
  local started=$SECONDS
  printf '\n$ %s\n' "$*"
  if ! "$@"; then
    printf '\ntour: FAILED (exit non-zero): %s\n' "$*" >&2
    exit 1
  fi
  printf '  ok (%ss)\n' "$((SECONDS - started))"
}

# The tour's commands, read from README.md's "A tour" block, so the script checks what the README says.
mapfile -t tour < <(awk '/^## A tour/{on=1} on&&/^```sh/{code=1;next} code&&/^```/{exit} code' README.md | sed 's/[[:space:]]*#.*$//' | grep -v '^[[:space:]]*$')
[ "${#tour[@]}" -ge 5 ] || { echo "tour: found only ${#tour[@]} commands in README.md's tour" >&2; exit 1; }
# The clinical workflow ("Checking a model on your own films"), on the tour's run, with the phantom
# stand-in for a hospital's folder that its text names.
mapfile -t clinical < <(awk '/^## Checking a model on your own films/{on=1} on&&/^```sh/{code=1;next} code&&/^```/{exit} code' README.md | sed 's/[[:space:]]*#.*$//' | grep -v '^[[:space:]]*$')
[ "${#clinical[@]}" -eq 5 ] || { echo "tour: README.md's clinical workflow has ${#clinical[@]} commands, not 5" >&2; exit 1; }

step npm ci --no-audit --no-fund --loglevel=error
step npm start
step npm start
for pass in 1 2; do
  printf '\n=== tour, pass %s ===\n' "$pass"
  for command in "${tour[@]}"; do step bash -c "$command"; done
  step npx osteo data synth --dest hospital --seed 7
  for command in "${clinical[@]}"; do step bash -c "$command"; done
done
printf '\ntour: every command exited 0 (npm start twice, the tour and the clinical workflow twice)\n'
