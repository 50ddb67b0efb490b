#!/usr/bin/env bash
# Install the Stempel hub on Debian (12 or later), in one command:
#   sudo scripts/install-hub.sh --merchant cafe-rosa --name "Cafe Rosa" --base-url https://stempel.example \
#        --owner owner@cafe-rosa.example [--postgres] [--cafile CA --certfile CERT --keyfile KEY]
#
# 1. Debian packages: mosquitto python3-venv (and postgresql with --postgres)
# 2. the `stempel-hub` system user; /var/lib/stempel-hub (0700): keys, SQLite, broker files
# 3. the release under /opt/stempel (as for the kiosk: scripts/install-common.sh), with
#    psycopg for --postgres; stempel-hub in /usr/local/bin
# 4. /etc/stempel/hub.toml (0640 root:stempel-hub), written once and then left to you; with
#    --postgres the database `stempel` owned by the role `stempel-hub` (peer login over the local
#    socket, no password anywhere)
# 5. the first shop (`stempel-hub init`), the broker accounts (`stempel-hub broker-config`, run
#    when there are none yet or when broker options are given), and Mosquitto's files from them:
#    /etc/mosquitto/conf.d/stempel.conf, /etc/mosquitto/stempel/ (0640 root:mosquitto);
#    Mosquitto restarted when its config changed, reloaded when only accounts did
# 6. systemd/stempel-hub-ingest@.service (workers 1..N) and stempel-hub-web.service installed as
#    they are, enabled, started (restarted when something above changed)
# 7. the first owner login (`stempel-hub user add`): the password is asked for, or read from
#    --owner-password-file
# 8. the check, in words: broker, workers, web, database, and what to do next
#
# After each `stempel-hub add-kiosk`, run it again (no options needed): it installs the new
# broker accounts and reloads Mosquitto. It changes only what differs and says so. Exit status 0,
# or 1 when the check finds something to fix (the install itself is done then).
#   --hub-workers N        ingest workers (default: as many as the broker accounts, else 1)
#   --uninstall [--purge]  stop and remove the services, Mosquitto's Stempel files and /opt/stempel;
#                          /var/lib/stempel-hub, /etc/stempel, the database and the user stay unless --purge
#   --root DIR             write every file under DIR, print the system commands as a plan (stempel-hub
#                          commands, which only write the hub's data dir, run there when stempel-hub is
#                          on PATH and the hub uses SQLite)
#   --wheel FILE | --source DIR   install that instead of the checkout this script is in
#   --no-check             skip the final check
set -euo pipefail
# shellcheck source=scripts/install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"

CONFIG=/etc/stempel
DATA=/var/lib/stempel-hub
HUB_TOML=$CONFIG/hub.toml
PG_URL="postgresql+psycopg://stempel-hub@/stempel?host=/var/run/postgresql"

usage() {
    [ "${1:-0}" -eq 0 ] || exec >&2
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit "${1:-0}"
}

args=("$@")
uninstall=no purge=no run_check=yes postgres=no workers="" merchant="" name="" base_url="" owner="" owner_pw=""
broker_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) set_root "${2:-}"; shift ;;
        --wheel) set_wheel "${2:-}"; shift ;;
        --source) set_source "${2:-}"; shift ;;
        --postgres) postgres=yes ;;
        --merchant) merchant=${2:-}; shift ;;
        --name) name=${2:-}; shift ;;
        --base-url) base_url=${2:-}; shift ;;
        --owner) owner=${2:-}; shift ;;
        --owner-password-file) owner_pw=${2:-}; shift ;;
        --hub-workers) workers=${2:-}; shift ;;
        --cafile | --certfile | --keyfile) broker_opts+=("$1" "${2:-}"); shift ;;
        --uninstall) uninstall=yes ;;
        --purge) purge=yes ;;
        --no-check) run_check=no ;;
        -h | --help) usage ;;
        *) warn "unknown option $1"; usage 2 ;;
    esac
    shift
done
need_root_user "${args[@]}"
[ "$purge" = no ] || [ "$uninstall" = yes ] || die "--purge goes with --uninstall"
if [ -n "$merchant$name$base_url" ] && { [ -z "$merchant" ] || [ -z "$name" ] || [ -z "$base_url" ]; }; then
    die "--merchant, --name and --base-url go together (the shop's id, the name customers see, the hub's public URL)"
fi
[ -z "$owner" ] || [ -n "$merchant" ] || die "--owner needs --merchant, --name and --base-url (the shop the login is for)"
if [ -n "$owner_pw" ]; then
    [ -r "$owner_pw" ] || die "--owner-password-file $owner_pw cannot be read"
    owner_pw=$(realpath "$owner_pw")
fi
[ -z "$workers" ] || [[ "$workers" =~ ^[1-9][0-9]?$ ]] || die "--hub-workers takes a number from 1 to 99"
if [ -e "$(at /etc/systemd/system/stempel-kiosk.service)" ]; then
    die "this machine runs a Stempel kiosk (stempel-kiosk.service is installed): a machine is either a kiosk or a hub"
fi

# toml_get FILE SECTION KEY DEFAULT: one value of a TOML file (Python's tomllib), or DEFAULT.
toml_get() {
    python3 - "$@" <<'PY'
import sys
import tomllib

path, section, key, default = sys.argv[1:]
try:
    with open(path, "rb") as f:
        print(tomllib.load(f).get(section, {}).get(key, default))
except FileNotFoundError:
    print(default)
PY
}

hub_uses_postgres() { [[ "$(toml_get "$(at "$HUB_TOML")" hub db_url "")" == postgresql* ]]; }

# The number of ingest workers: --hub-workers, else the worker accounts broker-config made, else 1.
worker_count() {
    local settings made=0
    settings=$(at "$DATA/broker/hub-mqtt.toml")
    [ -f "$settings" ] && made=$(grep -c '^"stempel-hub-[0-9][0-9]*" *=' "$settings" || true)
    if [ -n "$workers" ]; then echo "$workers"; elif [ "$made" -gt 0 ]; then echo "$made"; else echo 1; fi
}

write_hub_toml() {
    local db="# db_url = \"$PG_URL\"   # PostgreSQL (install-hub.sh --postgres)"
    [ "$postgres" = no ] || db="db_url = \"$PG_URL\"   # peer login as stempel-hub over the local socket"
    if [ -e "$(at "$HUB_TOML")" ]; then
        if [ "$postgres" = yes ] && ! hub_uses_postgres; then
            die "--postgres: $HUB_TOML has no PostgreSQL db_url, so this hub keeps its data in SQLite; moving it is not automatic: drop --postgres, or start a new hub (move $HUB_TOML and $DATA away first)"
        fi
        own "$HUB_TOML" root:stempel-hub
        return 0
    fi
    put_text "$HUB_TOML" 0640 root:stempel-hub <<EOF
# The Stempel hub's settings (cloud/config.py), written by install-hub.sh; it leaves this file as
# you edit it. Flags and STEMPEL_* variables (also in /etc/stempel/hub.env) override it.
[hub]
data_dir = "$DATA"
$db

[mqtt]
settings_file = "$DATA/broker/hub-mqtt.toml"   # written by stempel-hub broker-config

[web]
host = "127.0.0.1"   # put a TLS proxy (Caddy, nginx) in front: the session cookie is Secure
port = 8080
EOF
}

setup_postgres() {
    local sql=(runuser -u postgres -- psql -XtAq -c)
    if ! real; then
        run systemctl enable --now postgresql
        run runuser -u postgres -- createuser stempel-hub
        run runuser -u postgres -- createdb --owner stempel-hub stempel
        return 0
    fi
    cd /   # runuser keeps the working folder, which postgres may not be allowed into (paths are absolute)
    if ! systemctl is-active --quiet postgresql; then
        systemctl enable --quiet --now postgresql
        changed "started postgresql"
    fi
    if [ "$("${sql[@]}" "SELECT 1 FROM pg_roles WHERE rolname = 'stempel-hub'")" != 1 ]; then
        runuser -u postgres -- createuser stempel-hub
        changed "PostgreSQL role stempel-hub"
    fi
    if [ "$("${sql[@]}" "SELECT 1 FROM pg_database WHERE datname = 'stempel'")" != 1 ]; then
        runuser -u postgres -- createdb --owner stempel-hub stempel
        changed "PostgreSQL database stempel"
    fi
}

# hub ARGS...: stempel-hub as the stempel-hub user with the installed config; its output in
# HUB_OUT. With --root it runs against DIR's data dir when it can (stempel-hub on PATH, SQLite),
# else it is planned. Returns stempel-hub's status.
HUB_OUT=""
hub() {
    local bin status=0
    if real; then
        HUB_OUT=$(cd / && runuser -u stempel-hub -- "$OPT/current/bin/stempel-hub" --config "$HUB_TOML" "$@" 2>&1) || status=$?
    elif bin=$(command -v stempel-hub) && ! hub_uses_postgres; then
        HUB_OUT=$("$bin" --config "$(at "$HUB_TOML")" --data-dir "$(at "$DATA")" "$@" 2>&1) || status=$?
    else
        run runuser -u stempel-hub -- "$OPT/current/bin/stempel-hub" --config "$HUB_TOML" "$@"
        HUB_OUT="(planned)"
    fi
    return "$status"
}

setup_shop() {
    [ -n "$merchant" ] || return 0
    hub init --merchant "$merchant" --name "$name" --base-url "$base_url" || die "stempel-hub init: $HUB_OUT"
    [[ "$HUB_OUT" != *" created;"* ]] || changed "shop $merchant ($HUB_OUT)"
}

setup_broker_accounts() {
    local line
    if [ -f "$(at "$DATA/broker/hub-mqtt.toml")" ] && [ -z "$workers" ] && [ ${#broker_opts[@]} -eq 0 ]; then
        return 0   # made before; `add-kiosk` keeps the accounts current, broker options change the rest
    fi
    hub broker-config --hub-workers "$(worker_count)" "${broker_opts[@]}" || die "stempel-hub broker-config: $HUB_OUT"
    while IFS= read -r line; do
        [[ "$line" != "hub account "* ]] || changed "broker ${line%%:*}"
    done <<<"$HUB_OUT"
}

install_broker_files() {
    local from=$DATA/broker conf_before=$CHANGES accounts_before file
    if [ ! -f "$(at "$from/mosquitto-stempel.conf")" ]; then
        real && die "$from/mosquitto-stempel.conf is missing: stempel-hub broker-config did not write it"
        run install -m 0640 -g mosquitto "$from/stempel.passwd" "$from/stempel.acl" "$from/stempel-dynsec.json" /etc/mosquitto/stempel/
        run install -m 0644 "$from/mosquitto-stempel.conf" /etc/mosquitto/conf.d/stempel.conf
        run systemctl restart mosquitto
        return 0
    fi
    put_file "$(at "$from/mosquitto-stempel.conf")" /etc/mosquitto/conf.d/stempel.conf 0644 root:root
    put_dir /etc/mosquitto/stempel 0750 root:mosquitto
    accounts_before=$CHANGES
    for file in stempel.passwd stempel.acl stempel-dynsec.json; do
        [ ! -f "$(at "$from/$file")" ] || put_file "$(at "$from/$file")" "/etc/mosquitto/stempel/$file" 0640 root:mosquitto
    done
    if real && [ -f /etc/mosquitto/mosquitto.conf ]; then
        grep -Eq '^[[:space:]]*include_dir[[:space:]]+/etc/mosquitto/conf.d' /etc/mosquitto/mosquitto.conf ||
            warn "/etc/mosquitto/mosquitto.conf has no 'include_dir /etc/mosquitto/conf.d': Mosquitto ignores stempel.conf"
        ! grep -Eq '^[[:space:]]*(listener|allow_anonymous[[:space:]]+true)' /etc/mosquitto/mosquitto.conf ||
            warn "/etc/mosquitto/mosquitto.conf opens a listener or allows anonymous clients: take those lines out"
    fi
    if ! real; then
        run systemctl enable mosquitto
        run systemctl restart mosquitto
        return 0
    fi
    if ! systemctl is-enabled --quiet mosquitto 2>/dev/null; then
        systemctl enable --quiet mosquitto
        changed "enabled mosquitto"
    fi
    if ! systemd_running; then
        return 0   # it reads the new files when it starts
    elif [ "$accounts_before" -ne "$conf_before" ] || ! systemctl is-active --quiet mosquitto; then
        systemctl restart mosquitto || warn "mosquitto did not restart: journalctl -u mosquitto -n 50"
        changed "restarted mosquitto (new configuration)"
    elif [ "$CHANGES" -ne "$accounts_before" ]; then
        systemctl reload mosquitto   # SIGHUP: new accounts and ACL; connected clients stay connected
        changed "reloaded mosquitto (accounts)"
    fi
}

setup_owner() {
    [ -n "$owner" ] || return 0
    local status=0
    if [ -n "$owner_pw" ]; then
        hub user add --merchant "$merchant" --login "$owner" --password-stdin <"$owner_pw" || status=$?
    elif [ -t 0 ] && real; then
        say "  the password for $owner (at least 10 characters):"
        (cd / && runuser -u stempel-hub -- "$OPT/current/bin/stempel-hub" --config "$HUB_TOML" \
            user add --merchant "$merchant" --login "$owner") || die "stempel-hub user add failed (see above)"
        HUB_OUT=""
    else
        say "  owner $owner: not made (no terminal to ask the password, no --owner-password-file):"
        say "    sudo -u stempel-hub stempel-hub user add --merchant $merchant --login $owner"
        return 0
    fi
    if [ "$status" -eq 0 ]; then
        [ "$HUB_OUT" = "(planned)" ] || changed "owner login $owner"
    elif [[ "$HUB_OUT" == *"exists already"* ]]; then
        return 0
    else
        die "stempel-hub user add: $HUB_OUT"
    fi
}

# --- the check --------------------------------------------------------------------------------

finding() {   # finding PART TEXT [FIX]
    say "$1: $2"
    [ -z "${3:-}" ] || { say "    fix: $3"; BAD=$((BAD + 1)); }
}

check_unit() {   # check_unit UNIT PART
    if systemctl is-active --quiet "$1"; then
        finding "$2" "running ($1)"
    else
        finding "$2" "$1 is not running" "journalctl -u $1 -n 50 says why"
    fi
}

port_open() { timeout 3 bash -c ": </dev/tcp/$1/$2" 2>/dev/null; }

final_check() {
    local n port bind kind web_host web_port url conf=/etc/mosquitto/conf.d/stempel.conf
    BAD=0
    say ""
    say "check:"
    if ! real; then
        run systemctl is-active mosquitto "stempel-hub-ingest@1" stempel-hub-web
        return 0
    fi
    if ! systemd_running; then
        finding "services" "enabled; they start at boot (systemd is not running here, so nothing more to check now)"
        return 0
    fi
    check_unit mosquitto "broker"
    while read -r port bind kind; do
        [ "$bind" != - ] || bind=""
        if port_open "${bind:-127.0.0.1}" "$port"; then
            finding "broker" "listening on port $port ($kind, ${bind:-every address})"
        else
            finding "broker" "nothing answers on port $port" "journalctl -u mosquitto -n 50 (a port taken by another program?)"
        fi
    done < <(awk '/^listener /{ if (p) print p, b, t; p = $2; b = ($3 == "" ? "-" : $3); t = "plain MQTT" }
                  /^certfile /{ t = "TLS" } END { if (p) print p, b, t }' "$conf")
    for n in $(seq 1 "$(worker_count)"); do check_unit "stempel-hub-ingest@$n" "ingest worker $n"; done
    check_unit stempel-hub-web "web"
    web_host=$(toml_get "$HUB_TOML" web host 127.0.0.1)
    web_port=$(toml_get "$HUB_TOML" web port 8080)
    [ "$web_host" != 0.0.0.0 ] || web_host=127.0.0.1
    url="http://$web_host:$web_port/owner/login"
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' "$url" 2>/dev/null; then
        finding "web" "answers at $url; serve it as https://<your domain>/ through a TLS proxy (the session cookie is Secure)"
    else
        finding "web" "no answer at $url" "journalctl -u stempel-hub-web -n 50"
    fi
    if hub_uses_postgres; then finding "database" "PostgreSQL database stempel (peer login as stempel-hub)"
    else finding "database" "SQLite in $DATA"; fi
    [ -z "$owner" ] || finding "owner" "$owner signs in at $base_url/owner/"
    say "next: a kiosk: sudo -u stempel-hub stempel-hub add-kiosk --merchant ${merchant:-SHOP} --kiosk counter-1 --broker-host $(hostname -f 2>/dev/null || hostname)"
    say "      then run this script again (it installs the kiosk's broker account), and on the Pi:"
    say "      sudo scripts/install-kiosk.sh BUNDLE (the folder add-kiosk wrote, copied there)"
    if [ "$BAD" -eq 0 ]; then say "all parts work"; else say "$BAD need attention"; return 1; fi
}

# --- install and uninstall --------------------------------------------------------------------

do_install() {
    local packages=(mosquitto python3-venv) extras="" restart=no n
    if [ "$postgres" = yes ] || hub_uses_postgres; then
        postgres=yes
        packages+=(postgresql)
        extras="[postgres]"
    fi
    say "stempel hub: installing ${WHEEL:-$SOURCE}${ROOT:+ under $ROOT}"
    ensure_packages "${packages[@]}"
    ensure_user stempel-hub "$DATA"
    install_release "$extras"
    put_link "$OPT/current/bin/stempel-hub" /usr/local/bin/stempel-hub
    put_dir "$DATA" 0700 stempel-hub:stempel-hub
    put_dir "$CONFIG" 0750 root:stempel-hub
    write_hub_toml
    [ "$postgres" = no ] || setup_postgres
    setup_shop
    setup_broker_accounts
    install_broker_files
    setup_owner
    put_unit stempel-hub-ingest@.service
    put_unit stempel-hub-web.service
    [ "$CHANGES" -eq 0 ] || restart=yes
    for n in $(seq 1 "$(worker_count)"); do start_unit "stempel-hub-ingest@$n" "$restart"; done
    start_unit stempel-hub-web "$restart"
    finish
    [ "$run_check" = no ] || final_check
}

do_uninstall() {
    local link unit n kept
    say "stempel hub: uninstalling${ROOT:+ under $ROOT}"
    if real; then cd /; fi   # runuser keeps the working folder, which postgres may not be allowed into
    stop_unit stempel-hub-web stempel-hub-web.service
    if real; then
        for link in /etc/systemd/system/multi-user.target.wants/stempel-hub-ingest@*.service; do
            [ -e "$link" ] || [ -L "$link" ] || continue
            unit=$(basename "$link" .service)
            systemctl disable --quiet --now "$unit"
            changed "stopped and disabled $unit"
        done
    elif [ -e "$(at /etc/systemd/system/stempel-hub-ingest@.service)" ]; then
        for n in $(seq 1 "$(worker_count)"); do run systemctl disable --now "stempel-hub-ingest@$n"; done
    fi
    local before=$CHANGES
    for unit in stempel-hub-web.service stempel-hub-ingest@.service; do remove "/etc/systemd/system/$unit"; done
    if [ "$CHANGES" -ne "$before" ] && { ! real || systemd_running; }; then run systemctl daemon-reload; fi
    before=$CHANGES
    remove /etc/mosquitto/conf.d/stempel.conf
    remove /etc/mosquitto/stempel
    if [ "$CHANGES" -ne "$before" ] && { ! real || systemd_running; }; then run systemctl restart mosquitto; fi
    remove /usr/local/bin/stempel-hub
    remove "$OPT"
    if [ "$purge" = yes ]; then
        if hub_uses_postgres; then
            run runuser -u postgres -- dropdb --if-exists stempel
            run runuser -u postgres -- dropuser --if-exists stempel-hub
        fi
        remove "$HUB_TOML"
        rmdir "$(at "$CONFIG")" 2>/dev/null || true
        remove "$DATA"
        if ! real; then
            run userdel stempel-hub
        elif getent passwd stempel-hub >/dev/null; then
            userdel stempel-hub
            changed "user stempel-hub deleted"
        fi
    else
        for kept in "$DATA" "$HUB_TOML"; do
            [ ! -e "$(at "$kept")" ] || say "  kept: $kept"
        done
        hub_uses_postgres && say "  kept: the PostgreSQL database stempel"
        say "  kept: the user stempel-hub (--purge removes it and the data above: keys, ledger, broker accounts)"
    fi
    finish "nothing left to remove"
}

if [ "$uninstall" = yes ]; then do_uninstall; else do_install; fi
