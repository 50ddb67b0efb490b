#!/usr/bin/env bash
# Install a Stempel kiosk on Raspberry Pi OS Bookworm (arm64 or armhf), in one command:
#   sudo scripts/install-kiosk.sh BUNDLE_DIR        # the folder `stempel-hub add-kiosk` wrote
#   sudo scripts/install-kiosk.sh                   # later (an update): keeps /etc/stempel as it is
#
# 1. Debian packages: python3-picamera2 libzbar0 python3-lgpio i2c-tools python3-venv
# 2. the `stempel` system user, in the groups video, gpio and i2c; I2C switched on (raspi-config)
# 3. the release: a venv under /opt/stempel/releases/<version> (--system-site-packages, so the
#    picamera2 and lgpio from apt are seen), /opt/stempel/current -> it, /opt/stempel/venv ->
#    current (what the unit starts), stempel-kiosk in /usr/local/bin (scripts/install-common.sh)
# 4. the bundle in /etc/stempel/ (0750 root:stempel): secrets (kiosk.toml, mqtt.password,
#    client.key, anything unknown) 0640 root:stempel, public keys and certificates 0644;
#    kiosk.toml gets `[hardware] backend = "pi"` when it names no backend
# 5. /var/lib/stempel (0700 stempel): the ledger
# 6. systemd/stempel-kiosk.service installed as it is, enabled, started (restarted when
#    something above changed)
# 7. the check, in words: `python -m kiosk.check` as the stempel user (camera, display,
#    front panel, decoder, keys, ledger, broker), with the fix for what is missing
#
# Run it again at any time: it changes only what differs and says so ("no changes" when none).
# Exit status 0, or 1 when the check finds something to fix (the install itself is done then).
#   --uninstall [--purge]  stop and remove the service and /opt/stempel; /etc/stempel, the ledger
#                          in /var/lib/stempel and the user stay unless --purge
#   --root DIR             write every file under DIR, print the system commands as a plan
#   --wheel FILE | --source DIR   install that instead of the checkout this script is in
#   --no-check             skip the final check
set -euo pipefail
# shellcheck source=scripts/install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"

PACKAGES=(python3-picamera2 libzbar0 python3-lgpio i2c-tools python3-venv)
GROUPS_WANTED=(video gpio i2c)
CONFIG=/etc/stempel
STATE=/var/lib/stempel
UNIT=stempel-kiosk.service

usage() {
    [ "${1:-0}" -eq 0 ] || exec >&2
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit "${1:-0}"
}

args=("$@")
uninstall=no purge=no run_check=yes bundle=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) set_root "${2:-}"; shift ;;
        --wheel) set_wheel "${2:-}"; shift ;;
        --source) set_source "${2:-}"; shift ;;
        --uninstall) uninstall=yes ;;
        --purge) purge=yes ;;
        --no-check) run_check=no ;;
        -h | --help) usage ;;
        -*) warn "unknown option $1"; usage 2 ;;
        *) [ -z "$bundle" ] || die "one bundle folder only (got $bundle and $1)"; bundle=$1 ;;
    esac
    shift
done
need_root_user "${args[@]}"
[ "$purge" = no ] || [ "$uninstall" = yes ] || die "--purge goes with --uninstall"
if [ -e "$(at /etc/systemd/system/stempel-hub-web.service)" ]; then
    die "this machine runs the Stempel hub (stempel-hub-web.service is installed): a machine is either a kiosk or a hub"
fi

# The bundle's kiosk.toml, checked, with the real hardware chosen when it names no backend.
kiosk_toml() {
    python3 - "$1" <<'PY'
import re
import sys
import tomllib

path = sys.argv[1]
text = open(path, encoding="utf-8").read()
try:
    hardware = tomllib.loads(text).get("hardware")
except tomllib.TOMLDecodeError as exc:
    sys.exit(f"error: {path} is not valid TOML ({exc}): make the bundle again with `stempel-hub add-kiosk`")
note = "# backend added by install-kiosk.sh: this machine drives the real camera, OLED, LED, buzzer and button"
if hardware is None:
    text = text.rstrip("\n") + f'\n\n[hardware]\n{note}\nbackend = "pi"\n'
elif "backend" not in hardware:
    text = re.sub(r"(?m)^\[hardware\][ \t]*(#.*)?$", lambda m: f'{m.group(0)}\n{note}\nbackend = "pi"', text, count=1)
sys.stdout.write(text)
PY
}

install_bundle() {
    local file name
    put_dir "$CONFIG" 0750 root:stempel
    shopt -s nullglob
    for file in "$bundle"/*; do
        name=$(basename "$file")
        if [ ! -f "$file" ] || [[ ! "$name" =~ ^[A-Za-z0-9._-]+$ ]]; then
            warn "bundle: $name is not a plain file; left out"
            continue
        fi
        case "$name" in
            kiosk.toml)
                kiosk_toml "$file" >"$WORK/kiosk.toml"
                put_file "$WORK/kiosk.toml" "$CONFIG/kiosk.toml" 0640 root:stempel ;;
            keys.json | hub-keys.json | ca.crt | client.crt)
                put_file "$file" "$CONFIG/$name" 0644 root:root ;;
            *)
                put_file "$file" "$CONFIG/$name" 0640 root:stempel ;;
        esac
    done
    shopt -u nullglob
}

enable_i2c() {
    if ! real; then
        run raspi-config nonint do_i2c 0
        return 0
    fi
    if ! command -v raspi-config >/dev/null; then
        [ -e /dev/i2c-1 ] || warn "no raspi-config here: switch I2C on yourself (dtparam=i2c_arm=on in /boot/firmware/config.txt, then reboot)"
        return 0
    fi
    [ "$(raspi-config nonint get_i2c)" = 0 ] && return 0   # 0 means on
    raspi-config nonint do_i2c 0
    changed "I2C switched on (raspi-config nonint do_i2c 0)"
}

final_check() {
    local check=(runuser -u stempel -- "$OPT/current/bin/python" -m kiosk.check --config "$CONFIG/kiosk.toml")
    say ""
    say "check:"
    if ! real; then
        run "${check[@]}"
        return 0
    fi
    if ! systemd_running; then
        say "service: enabled; it starts at boot (systemd is not running here)"
    elif systemctl is-active --quiet stempel-kiosk; then
        say "service: running (systemctl status stempel-kiosk)"
    else
        say "service: not running"
        say "    fix: journalctl -u stempel-kiosk -n 50 says why; the lines below say what is missing"
    fi
    (cd / && "${check[@]}")   # from /: `python -m` would import a checkout in the working folder first
}

do_install() {
    if [ -z "$bundle" ] && [ ! -f "$(at "$CONFIG/kiosk.toml")" ]; then
        warn "give the bundle folder that \`stempel-hub add-kiosk\` wrote"
        usage 2
    fi
    [ -z "$bundle" ] || [ -f "$bundle/kiosk.toml" ] || die "$bundle has no kiosk.toml: give the folder \`stempel-hub add-kiosk\` wrote (its bundle in <hub data dir>/bundles/<merchant>-<kiosk>/)"
    if real && ! grep -qs "Raspberry Pi" /proc/device-tree/model; then
        warn "this does not look like a Raspberry Pi: the camera, display and GPIO checks will say what is missing"
    fi
    say "stempel kiosk: installing ${WHEEL:-$SOURCE} with ${bundle:-the bundle installed in $CONFIG}${ROOT:+ under $ROOT}"
    ensure_packages "${PACKAGES[@]}"
    ensure_user stempel "$STATE" "${GROUPS_WANTED[@]}"
    enable_i2c
    install_release ""
    put_link "$OPT/current/bin/stempel-kiosk" /usr/local/bin/stempel-kiosk
    if [ -n "$bundle" ]; then install_bundle; else put_dir "$CONFIG" 0750 root:stempel; fi
    put_dir "$STATE" 0700 stempel:stempel
    put_unit "$UNIT"
    local restart=no
    [ "$CHANGES" -eq 0 ] || restart=yes
    start_unit stempel-kiosk "$restart"
    finish
    [ "$run_check" = no ] || final_check
}

do_uninstall() {
    say "stempel kiosk: uninstalling${ROOT:+ under $ROOT}"
    stop_unit stempel-kiosk "$UNIT"
    if [ -e "$(at "/etc/systemd/system/$UNIT")" ]; then
        remove "/etc/systemd/system/$UNIT"
        if ! real || systemd_running; then run systemctl daemon-reload; fi
    fi
    remove /usr/local/bin/stempel-kiosk
    remove "$OPT"
    if [ "$purge" = yes ]; then
        remove "$CONFIG"
        remove "$STATE"
        if ! real; then
            run userdel stempel
        elif getent passwd stempel >/dev/null; then
            userdel stempel
            changed "user stempel deleted"
        fi
    else
        for kept in "$CONFIG" "$STATE"; do
            [ -e "$(at "$kept")" ] && say "  kept: $kept"
        done
        say "  kept: the user stempel (--purge removes it, $CONFIG and the ledger in $STATE)"
    fi
    finish "nothing left to remove"
}

if [ "$uninstall" = yes ]; then do_uninstall; else do_install; fi
