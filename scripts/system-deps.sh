#!/usr/bin/env bash
# Install the Debian packages Stempel needs when they are missing (idempotent).
#   libzbar0         the QR decoder behind pyzbar
#   mosquitto        the MQTT broker (the demo and the integration tests start private ones)
#   python3-venv     so `python3 -m venv` works on a fresh Raspberry Pi OS / Debian
set -euo pipefail

missing=()
ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' || missing+=(libzbar0)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "stempel: installing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "stempel: need root to install ${missing[*]}; run: apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
