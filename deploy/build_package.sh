#!/usr/bin/env bash
# Build the device package: build_package.sh BUNDLE_DIR OUT_DIR [PYTHON] -> OUT_DIR/kws-edge.tar.gz
# (`make edge-package` calls it). The tarball unpacks to kws-edge/ holding edge_runtime/, the bundle (manifest and
# the int8 models it names), requirements-edge.txt, install.sh, kws-edge.service, the example config
# kws-edge.toml and docs/edge-device.md. PYTHON (default: .venv-edge/bin/python) checks the bundle loads first.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${1:?usage: build_package.sh BUNDLE_DIR OUT_DIR [PYTHON]}"
OUT="${2:?usage: build_package.sh BUNDLE_DIR OUT_DIR [PYTHON]}"
PYTHON="${3:-$REPO/.venv-edge/bin/python}"
NAME=kws-edge
# What the device needs from a bundle: the manifest and the two int8 models it names (window and streaming), and
# the second stage's folder (its manifest and int8 window model) when the bundle has a verifier.
BUNDLE_FILES_SCRIPT='
import json, os, sys
manifest = json.load(open(sys.argv[1]))
print(manifest["model"]["file"])
print(manifest["streaming"]["file"])
verifier = manifest.get("verifier")
if verifier:
    folder = verifier["folder"]
    inner = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), folder, "manifest.json")))
    print(folder + "/manifest.json")
    print(folder + "/" + inner["model"]["file"])
'

[ -f "$BUNDLE/manifest.json" ] || { echo "error: $BUNDLE holds no manifest.json; run 'make convert' first" >&2; exit 1; }
"$PYTHON" -c 'import json, sys; sys.exit(0 if "streaming" in json.load(open(sys.argv[1])) else 1)' "$BUNDLE/manifest.json" ||
	{ echo "error: the bundle in $BUNDLE has no streaming model: (re)convert a dscnn checkpoint with make convert" >&2; exit 1; }
(cd "$REPO" && "$PYTHON" -c 'import sys; from edge_runtime.stream_manifest import load_stream_bundle; load_stream_bundle(sys.argv[1])' "$BUNDLE") ||
	{ echo "error: the bundle in $BUNDLE does not load (see above)" >&2; exit 1; }

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/$NAME"
mkdir -p "$ROOT/bundle" "$ROOT/docs" "$ROOT/edge_runtime"
cp "$REPO"/edge_runtime/*.py "$ROOT/edge_runtime/"
cp "$BUNDLE/manifest.json" "$ROOT/bundle/"
"$PYTHON" -c "$BUNDLE_FILES_SCRIPT" "$BUNDLE/manifest.json" | while read -r file; do
	mkdir -p "$ROOT/bundle/$(dirname "$file")" && cp "$BUNDLE/$file" "$ROOT/bundle/$file"
done
cp "$REPO/requirements-edge.txt" "$REPO/deploy/install.sh" "$REPO/deploy/kws-edge.service" "$REPO/deploy/kws-edge.toml" "$ROOT/"
cp "$REPO/docs/edge-device.md" "$ROOT/docs/"
chmod +x "$ROOT/install.sh"
(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown) >"$ROOT/VERSION"
mkdir -p "$OUT"
tar -czf "$OUT/$NAME.tar.gz" -C "$STAGE" "$NAME"
echo "$OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1)): copy it to the device, then: tar xzf $NAME.tar.gz && sudo $NAME/install.sh"
