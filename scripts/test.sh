#!/usr/bin/env bash
# The project's one test command (README "Testing"; .ci/run calls it).
#
# On a fresh machine it installs what the tests need, from the package
# registries only, then runs vet, the race-enabled test suite and short fuzz
# runs. Every real server the tests start (S3-compatible versitygw,
# DynamoDB-compatible dynalite, PostgreSQL) is found through the variables
# exported here; a test whose server is missing fails, it never skips.
#
#   scripts/test.sh            install + vet + go test -race ./... + fuzz
#   FUZZTIME=0 scripts/test.sh skip the fuzz runs (seed corpora still run as tests)
#   FUZZTIME=200000x            fuzz longer (a count of executions per target)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"
mkdir -p "$tools"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
gobin="$(go env GOPATH)/bin"

step() { printf '\n==> %s\n' "$*"; }

# Per-phase wall time, printed at the end (and on failure): phase NAME
# starts timing NAME and ends the previous phase.
phases=()
phase_name=""
phase_start=$SECONDS
script_start=$SECONDS
phase() {
  if [ -n "$phase_name" ]; then phases+=("$phase_name $((SECONDS - phase_start))s"); fi
  phase_name="$1"
  phase_start=$SECONDS
}
report_phases() {
  phase ""
  echo "phase durations: ${phases[*]}, total $((SECONDS - script_start))s"
}
trap report_phases EXIT

phase install

# S3-compatible server: versitygw (shared/BACKENDS.md). No registry ships a
# prebuilt package of it (not in Debian, not on npm), so it is built from
# the Go module proxy once per version and kept under .tools/versitygw-<v>/;
# a versitygw already on PATH or in GOPATH/bin is copied there instead when
# its build info says it is that version. DATAPLANE_VERSITYGW overrides all.
VERSITYGW_VERSION=v1.8.0
vgw_dir="$tools/versitygw-$VERSITYGW_VERSION"
if [ -z "${DATAPLANE_VERSITYGW:-}" ] && [ ! -x "$vgw_dir/versitygw" ]; then
  for c in "$(command -v versitygw || true)" "$gobin/versitygw"; do
    if [ -x "$c" ] && [ "$(go version -m "$c" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/versity/versitygw" {print $3}')" = "$VERSITYGW_VERSION" ]; then
      mkdir -p "$vgw_dir" && cp "$c" "$vgw_dir/versitygw"
      break
    fi
  done
  if [ ! -x "$vgw_dir/versitygw" ]; then
    step "building versitygw $VERSITYGW_VERSION into $vgw_dir (once per version; minutes on a loaded machine)"
    GOBIN="$vgw_dir" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  fi
fi
export DATAPLANE_VERSITYGW="${DATAPLANE_VERSITYGW:-$vgw_dir/versitygw}"

# DynamoDB-compatible server: dynalite from npm, kept under .tools/.
DYNALITE_VERSION=4.0.0
if [ ! -x "$tools/npm/node_modules/.bin/dynalite" ]; then
  step "installing dynalite $DYNALITE_VERSION (npm)"
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" "dynalite@$DYNALITE_VERSION"
fi
export DATAPLANE_DYNALITE="${DATAPLANE_DYNALITE:-$tools/npm/node_modules/.bin/dynalite}"

# PostgreSQL server binaries (initdb, pg_ctl, postgres) from Debian.
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin="$d"; done
if [ -z "$pg_bin" ]; then
  step "installing postgresql (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin="$d"; done
fi
export DATAPLANE_PG_BIN="${DATAPLANE_PG_BIN:-$pg_bin}"

# Headless Chromium from Debian, for the fleet page's browser test
# (devcluster TestFleetPageInBrowser fails, never skips, without it).
if [ ! -x /usr/bin/chromium ] && [ -z "${DATAPLANE_CHROMIUM:-}" ]; then
  step "installing chromium (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export DATAPLANE_CHROMIUM="${DATAPLANE_CHROMIUM:-/usr/bin/chromium}"

# Prometheus and promtool from Debian (package prometheus, 2.42), for the
# alert rules' tests: deploy's TestAlertRules runs promtool test rules, and
# devcluster's TestAlertsFire runs a Prometheus server on loopback. Both
# fail, never skip, without them. The package may start (or enable) its own
# prometheus service: stop and disable it, the tests start their own.
if { [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; } && [ -z "${DATAPLANE_PROMETHEUS:-}" ]; then
  step "installing prometheus (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || { echo "prometheus: apt-get install did not provide /usr/bin/prometheus and /usr/bin/promtool"; exit 1; }
fi
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus >/dev/null
elif [ -x /etc/init.d/prometheus ] && command -v service >/dev/null && service prometheus status >/dev/null 2>&1; then
  service prometheus stop >/dev/null
fi
export DATAPLANE_PROMETHEUS="${DATAPLANE_PROMETHEUS:-/usr/bin/prometheus}"
export DATAPLANE_PROMTOOL="${DATAPLANE_PROMTOOL:-/usr/bin/promtool}"

phase vet
step "go vet"
go vet ./...
# The bench's chart drawing is linked only with -tags charts (it keeps
# gonum/plot out of the serving binary): vet that build too.
go vet -tags charts ./cmd/dataplane/

# The container image's binary, built as the Dockerfile builds it (the
# same script): static, and it runs.
phase image
step "image binary (scripts/build-static.sh, as in the Dockerfile)"
img="$tools/image/dataplane"
scripts/build-static.sh "$img" v0.0.0-ci
v=$("$img" version) && echo "$v"
case "$v" in "dataplane v0.0.0-ci "*) ;; *) echo "image binary: wrong version line"; exit 1 ;; esac
go version -m "$img" | grep -q 'CGO_ENABLED=0' || { echo "image binary: not static (CGO_ENABLED=0)"; exit 1; }
if go version -m "$img" | grep -q 'gonum.org/v1/plot'; then echo "image binary links gonum/plot"; exit 1; fi
"$img" sentinel -help >/dev/null 2>&1 || { echo "image binary: sentinel -help failed"; exit 1; }
ls -l "$img"

# Deployment files: the Helm chart (lint, golden renderings, strict decoding
# into the k8s.io/api types, deploy/kubernetes as its default rendering),
# the alert rules (promtool), the Dockerfile and the systemd unit (deploy/
# is its own module, so the main one does not depend on Helm or k8s.io/api;
# the example configs and the Grafana dashboard are checked by
# cmd/dataplane's tests).
phase deploy
step "deploy/ (go vet, go test)"
(cd deploy && go vet ./... && go test -count=1 ./...)

phase test
step "go test -race ./..."
# -v goes to a log, so the closing line can count tests; the screen gets the
# per-package lines, and everything but passing noise when something fails.
log="$tools/go-test.log"
set +e
go test -race -count=1 -timeout 25m -v ./... >"$log" 2>&1
rc=$?
set -e
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
if [ "$rc" -ne 0 ]; then
  grep -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' "$log" | tail -400
  echo "go test: $passed passed, $failed failed, $skipped skipped"
  exit "$rc"
fi
grep -E '^(ok|FAIL|\?)\s' "$log" || true

# Memory-bound tests are built without the race detector (whose shadow
# memory would distort them): run them here, on their own.
phase memory
step "go test (memory bounds, without -race)"
go test -count=1 -run 'Flood' -v ./gossip/ | tee -a "$log" | grep -E '^(\s*--- |ok|FAIL|\s+flood_test)' 
if [ "$skipped" -ne 0 ]; then
  echo "skipped tests (a skip is not a pass):"
  grep -E '^\s*--- SKIP' "$log"
fi

# Short coverage-guided runs of every decoder that faces the network or the
# disk. `go test -fuzz` takes one target in one package at a time.
# The default is a count of executions, not a duration: a duration-based
# -fuzztime can fail with a bare "context deadline exceeded" on a loaded
# machine, a race in Go's fuzz coordinator (go.dev/issue/75804, fixed only in
# Go 1.27); a count has no deadline to race.
FUZZTIME="${FUZZTIME:-30000x}"
if [ "$FUZZTIME" != "0" ]; then
  phase fuzz
  step "fuzz ($FUZZTIME each)"
  # The targets are found in the source (func FuzzX(f *testing.F) in a
  # _test.go file), not with `go test -list`, which links a test binary
  # per package only to print names.
  go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
    for target in $(cat "$dir"/*_test.go 2>/dev/null | sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\([A-Za-z0-9_]+ \*testing\.F\).*/\1/p'); do
      echo "fuzz $pkg $target"
      if ! out=$(go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" 2>&1); then
        echo "$out"
        exit 1
      fi
    done
  done
fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
