#!/usr/bin/env bash
# Install (or remove) the keyword-spotting edge runtime as the systemd service kws-edge, from this unpacked package.
#
#   sudo ./install.sh                 system packages, user, venv, runtime, bundle, config, service (enabled, started)
#   sudo ./install.sh --uninstall     stop and remove the service, the install folder and the user (config kept)
#   ./install.sh --no-system --prefix DIR    only venv + runtime + bundle + config in DIR: no apt, user or systemd
#
# Run with --help for every option. The TFLite interpreter package is chosen by machine and Python version:
# ai-edge-litert 2.1.0 (wheels for aarch64/x86_64, Python 3.10-3.13; newer releases crashed under arm64
# emulation), tflite-runtime 2.14.0 with numpy 1.x on Python 3.9 (its wheels stop at 3.11 and need numpy < 2).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE=kws-edge
PREFIX=/opt/kws-edge
CONFIG_DIR=/etc/kws-edge
SERVICE_USER=kws-edge
PYTHON=python3
SYSTEM=1
START=1
ACTION=install
PURGE=0
MACHINE="$(uname -m)"
PY_VERSION=""
APT_PACKAGES=(python3-venv python3-dev gcc portaudio19-dev libasound2)
LITERT_REQUIREMENT="ai-edge-litert==2.1.0"
TFLITE_RUNTIME_REQUIREMENTS=("tflite-runtime==2.14.0" "numpy==1.26.4")
TOML_BACKPORT="tomli==2.2.1" # the config reader for Python < 3.11 (3.11 has tomllib)
# The example config and unit name this folder; installing rewrites it to the real prefix.
TEMPLATE_PREFIX=/opt/kws-edge
# In the package next to this script; in the source tree one folder up.
REQUIREMENTS="$HERE/requirements-edge.txt"
[ -f "$REQUIREMENTS" ] || REQUIREMENTS="$HERE/../requirements-edge.txt"

usage() {
	cat <<EOF
usage: install.sh [options]
  --prefix DIR          install folder (default: $PREFIX)
  --python PY           Python 3.9-3.13 that creates the venv (default: $PYTHON)
  --user NAME           service user, created as a system user in the audio group (default: $SERVICE_USER)
  --no-system           no root needed: skip apt, the user and systemd; the config goes to DIR/kws-edge.toml
  --no-start            install and enable the service but do not start it now
  --uninstall           remove the service, DIR and the user (with --no-system: only DIR)
  --purge               with --uninstall: also remove $CONFIG_DIR
  --print-requirements  print the pip requirements chosen for this machine and Python, and exit
  --machine M           pretend to be machine M (uname -m) for --print-requirements (default: $MACHINE)
  --python-version X.Y  pretend to be Python X.Y for --print-requirements (default: the --python's)
  -h, --help            this text
EOF
}

die() {
	echo "error: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) PREFIX="${2:?--prefix needs a folder}"; shift ;;
	--python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
	--user) SERVICE_USER="${2:?--user needs a name}"; shift ;;
	--no-system) SYSTEM=0 ;;
	--no-start) START=0 ;;
	--uninstall) ACTION=uninstall ;;
	--purge) PURGE=1 ;;
	--print-requirements) ACTION=requirements ;;
	--machine) MACHINE="${2:?--machine needs a name}"; shift ;;
	--python-version) PY_VERSION="${2:?--python-version needs X.Y}"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option '$1'" ;;
	esac
	shift
done
PREFIX="$(realpath -m "$PREFIX")"
CONFIG="$CONFIG_DIR/kws-edge.toml"
[ "$SYSTEM" = 1 ] || CONFIG="$PREFIX/kws-edge.toml"

# The package's requirements with the interpreter (and numpy) this machine and Python can install.
requirements() {
	local version="$1" base
	base="$(grep -v -E '^(ai-edge-litert|tflite-runtime|numpy)[=<>~ ]' "$REQUIREMENTS" | grep -v -E '^\s*(#|$)')"
	case "$MACHINE" in
	aarch64 | arm64 | x86_64 | amd64) ;;
	*) die "no TFLite interpreter wheels for machine '$MACHINE' (32-bit Raspberry Pi OS?); use a 64-bit OS (aarch64)" ;;
	esac
	case "$version" in
	3.9 | 3.10) echo "$TOML_BACKPORT" ;;
	esac
	case "$version" in
	3.10 | 3.11 | 3.12 | 3.13)
		grep -E '^numpy[=<>~ ]' "$REQUIREMENTS"
		echo "$LITERT_REQUIREMENT"
		;;
	3.9) printf '%s\n' "${TFLITE_RUNTIME_REQUIREMENTS[@]}" ;;
	*) die "Python $version is not supported (3.9-3.13; Raspberry Pi OS bookworm has 3.11)" ;;
	esac
	echo "$base"
}

python_version() {
	"$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null ||
		die "cannot run '$PYTHON'; pass --python /path/to/python3"
}

need_root() {
	[ "$(id -u)" = 0 ] || die "run as root (sudo ./install.sh ...), or pass --no-system to install without system changes"
}

uninstall() {
	if [ "$SYSTEM" = 1 ]; then
		need_root
		if [ -f "/etc/systemd/system/$SERVICE.service" ]; then
			systemctl disable --now "$SERVICE" || true
			rm -f "/etc/systemd/system/$SERVICE.service"
			systemctl daemon-reload
		fi
		if id "$SERVICE_USER" >/dev/null 2>&1; then userdel "$SERVICE_USER" || true; fi
		if [ "$PURGE" = 1 ]; then rm -rf "$CONFIG_DIR"; fi
	fi
	case "$PREFIX" in
	/ | /usr | /usr/* | /etc | /home | /root) die "refusing to remove $PREFIX" ;;
	esac
	rm -rf "$PREFIX"
	echo "removed $SERVICE from $PREFIX"
}

install_files() {
	mkdir -p "$PREFIX"
	rm -rf "$PREFIX/edge_runtime" "$PREFIX/bundle"
	cp -r "$HERE/edge_runtime" "$HERE/bundle" "$HERE/docs" "$PREFIX/"
	cp "$REQUIREMENTS" "$PREFIX/"
	local version
	version="$(python_version)"
	requirements "$version" >"$PREFIX/requirements-installed.txt"
	echo "creating the venv in $PREFIX/venv with Python $version; interpreter: $(grep -E '^(ai-edge-litert|tflite-runtime)' "$PREFIX/requirements-installed.txt")"
	"$PYTHON" -m venv "$PREFIX/venv"
	"$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check -r "$PREFIX/requirements-installed.txt"
	if [ ! -f "$CONFIG" ]; then
		mkdir -p "$(dirname "$CONFIG")"
		sed "s#$TEMPLATE_PREFIX#$PREFIX#g" "$HERE/kws-edge.toml" >"$CONFIG"
		if [ "$SYSTEM" = 0 ]; then # no /var/log/kws-edge without systemd: log next to the config
			sed -i "s#/var/log/kws-edge#$PREFIX/log#g" "$CONFIG"
			mkdir -p "$PREFIX/log"
		fi
		echo "wrote the config $CONFIG (every key is explained in it)"
	else
		echo "kept the existing config $CONFIG"
	fi
}

check_runtime() {
	(cd "$PREFIX" && "$PREFIX/venv/bin/python" -m edge_runtime bench --model "$PREFIX/bundle" --seconds 5 --no-pin \
		>/dev/null) || die "the installed runtime does not run the bundle (see the error above)"
}

install_system() {
	need_root
	if command -v apt-get >/dev/null; then
		echo "installing system packages: ${APT_PACKAGES[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
	else
		echo "warning: no apt-get; make sure these are installed: ${APT_PACKAGES[*]}" >&2
	fi
	if ! id "$SERVICE_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir "$PREFIX" --shell /usr/sbin/nologin "$SERVICE_USER"
	fi
	usermod -a -G audio "$SERVICE_USER"
}

install_service() {
	sed -e "s#@PREFIX@#$PREFIX#g" -e "s#@USER@#$SERVICE_USER#g" -e "s#@CONFIG@#$CONFIG#g" \
		"$HERE/kws-edge.service" >"/etc/systemd/system/$SERVICE.service"
	systemctl daemon-reload
	if [ "$START" = 1 ]; then
		systemctl enable --now "$SERVICE"
		echo "started $SERVICE: journalctl -u $SERVICE -f"
	else
		systemctl enable "$SERVICE"
		echo "enabled $SERVICE (not started): systemctl start $SERVICE"
	fi
}

case "$ACTION" in
requirements)
	requirements "${PY_VERSION:-$(python_version)}"
	;;
uninstall)
	uninstall
	;;
install)
	[ -d "$HERE/edge_runtime" ] && [ -f "$HERE/bundle/manifest.json" ] || die "run install.sh from the unpacked package"
	if [ "$SYSTEM" = 1 ]; then install_system; fi
	install_files
	check_runtime
	if [ "$SYSTEM" = 1 ]; then
		chown -R root:root "$PREFIX"
		install_service
	else
		echo "installed in $PREFIX; try: cd $PREFIX && venv/bin/python -m edge_runtime run --config $CONFIG"
	fi
	;;
esac
