#!/usr/bin/env bash
# Audit log query benchmark: 100,000 synthetic cases; goal < 100 ms per query (issue #6).
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
swift build -c release --product AuditBenchmark >/dev/null
"$(swift build -c release --show-bin-path)/AuditBenchmark"
