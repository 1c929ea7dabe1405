#!/usr/bin/env bash
# Checks the module map (Ops/layers.txt) against every target's imports and Package.swift's declarations:
#   * an import of a project module that the target does not declare (it only builds by accident, transitively);
#   * an import that points up the map or sideways (same layer);
#   * a C module imported by a module not on its "only:" list;
#   * a target missing from the map.
# Usage: bash Ops/check_layers.sh [--map FILE] [--sources DIR] [--package-json FILE]
# (the options let a test feed it a fixture; by default it reads this repository). Exit 0: clean; 1: violations.
set -euo pipefail
cd "$(dirname "$0")/.."
source Ops/env.sh
MAP=Ops/layers.txt SOURCES=Sources PACKAGE_JSON=""
while (($#)); do
  case "$1" in
    --map) MAP="$2"; shift 2 ;;
    --sources) SOURCES="$2"; shift 2 ;;
    --package-json) PACKAGE_JSON="$2"; shift 2 ;;
    *) echo "check_layers: unknown option $1" >&2; exit 64 ;;
  esac
done
if [[ -z "$PACKAGE_JSON" ]]; then
  PACKAGE_JSON="$(mktemp)"
  trap 'rm -f "$PACKAGE_JSON"' EXIT
  swift package dump-package > "$PACKAGE_JSON"
fi
python3 - "$MAP" "$SOURCES" "$PACKAGE_JSON" <<'PY'
import json, os, re, sys

map_file, sources, package_json = sys.argv[1:4]
layer, only = {}, {}
for number, line in enumerate(open(map_file), 1):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    head, _, owners = line.partition("only:")
    parts = head.split()
    if len(parts) != 2 or not parts[0].isdigit():
        sys.exit(f"check_layers: {map_file}:{number}: expected '<layer> <module> [only: …]'")
    layer[parts[1]] = int(parts[0])
    if owners.strip():
        only[parts[1]] = set(owners.split())

package = json.load(open(package_json))
declared, target_paths = {}, {}
for target in package["targets"]:
    if target.get("type") == "test" or target["name"] == "TestSupport":
        continue
    deps = set()
    for dep in target.get("dependencies", []):
        for kind in ("byName", "target", "product"):
            if kind in dep:
                deps.add(dep[kind][0])
    if target.get("path"):
        target_paths[target["name"]] = target["path"]
    declared[target["name"]] = (deps, None)

problems = []
importer = re.compile(r"^\s*(?:@testable\s+|@_implementationOnly\s+|@_exported\s+|public\s+|internal\s+)*import\s+(?:(?:struct|class|enum|func|var|let|protocol)\s+)?([A-Za-z_][A-Za-z0-9_]*)")
for name, (deps, _) in sorted(declared.items()):
    if name not in layer:
        problems.append(f"{name}: not in the module map {map_file}")
        continue
    # A target's folder: its declared path (relative to the package root, the folder above Sources/) or Sources/<name>.
    folder = os.path.join(os.path.dirname(os.path.abspath(sources)), target_paths[name]) if name in target_paths else os.path.join(sources, name)
    for root, _, files in os.walk(folder):
        for file in sorted(files):
            if not file.endswith(".swift"):
                continue
            source = os.path.join(root, file)
            for number, text in enumerate(open(source, encoding="utf-8"), 1):
                match = importer.match(text)
                if not match:
                    continue
                module = match.group(1)
                if module not in layer:
                    continue  # outside the map: the toolchain and package dependencies
                where = f"{source}:{number}: {name} (L{layer[name]}) imports {module} (L{layer[module]})"
                if module not in deps:
                    problems.append(f"{where}: not declared in Package.swift's dependencies of {name}")
                if layer[module] > layer[name]:
                    problems.append(f"{where}: points up the module map")
                elif layer[module] == layer[name]:
                    problems.append(f"{where}: sideways (same layer)")
                if module in only and name not in only[module]:
                    problems.append(f"{where}: only {', '.join(sorted(only[module]))} may import {module}")
for problem in problems:
    print(f"LAYER_VIOLATION: {problem}")
print(f"check_layers: {len(declared)} target(s), {len(problems)} violation(s)")
sys.exit(1 if problems else 0)
PY
