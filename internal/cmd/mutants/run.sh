#!/usr/bin/env bash
# Runs the mutation tool (see main.go) niced, from the module root, keeping
# a log in /tmp. Flags are passed through, for example:
#   internal/cmd/mutants/run.sh -pkgs treekem -files validate.go
set -euo pipefail
cd "$(dirname "$0")/../../.."
log=$(mktemp /tmp/mutants.XXXXXX.log)
echo "mutants: logging to $log" >&2
nice -n 10 go run ./internal/cmd/mutants "$@" 2>&1 | tee "$log"
