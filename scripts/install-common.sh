# shellcheck shell=bash
# What scripts/install-kiosk.sh and scripts/install-hub.sh share (sourced, never run): the
# --root mode, change tracking, files with modes and owners, users, Debian packages, systemd
# units and the release layout under /opt/stempel.
#
# Every step first looks, then acts only on a difference, and says what it changed; a second
# run changes nothing and says so.
#
# --root DIR writes every file under DIR instead of /, and prints each command that would change
# the system (apt-get, useradd, usermod, chown, systemctl, raspi-config, runuser, the venv's
# python and pip) as "plan: ..." instead of running it. DIR is not this machine, so the checks
# that decide whether such a command is needed (is the package there, the user, the unit
# enabled?) are not made there: the plan lists every one of them, each time.
#
# The release layout, which an update command builds on:
#   /opt/stempel/releases/<version>/     a venv (--system-site-packages) with Stempel installed;
#                                        its .stempel-release file, written last, marks it complete
#   /opt/stempel/current -> releases/<version>    the release in service
#   /opt/stempel/venv -> current                   the path the systemd units start
# A release is never rebuilt in place: a new version gets a new folder next to the old ones, and
# going back is one symlink and a restart (docs/INSTALL.md).

OPT=/opt/stempel
SYSTEM_PYTHON=/usr/bin/python3       # Debian's: only its venvs see the apt packages (picamera2, lgpio)
STEMPEL_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # the checkout these scripts are in
ROOT=""            # --root DIR
SOURCE=$STEMPEL_SRC  # what the release is built from: a source tree (--source) ...
WHEEL=""           # ... or a wheel (--wheel)
CHANGES=0
PLANNED=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
changed() { CHANGES=$((CHANGES + 1)); say "  changed: $*"; }
real() { [ -z "$ROOT" ]; }
at() { printf '%s%s' "$ROOT" "$1"; }   # where target path $1 is written: under DIR with --root

quoted() {
    local arg out=()
    for arg in "$@"; do
        if [[ "$arg" =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$arg"); else out+=("$(printf '%q' "$arg")"); fi
    done
    printf '%s' "${out[*]}"
}

# run CMD...: a command that changes the system; with --root it is printed as the plan instead.
run() {
    if real; then
        "$@"
    else
        PLANNED=$((PLANNED + 1))
        say "  plan: $(quoted "$@")"
    fi
}

# set_root DIR: the --root option; an absolute path without a trailing slash.
set_root() {
    [ -n "$1" ] || die "--root needs a folder"
    mkdir -p "$1"
    ROOT=$(cd "$1" && pwd)
    [ "$ROOT" != / ] || ROOT=""
}

need_root_user() {
    real || return 0
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*  (or --root DIR to try it in a scratch folder)"
}

# --- files ------------------------------------------------------------------------------------

same_mode() { [ "$((8#$(stat -c %a "$1")))" -eq "$((8#$2))" ]; }

# own TARGET USER:GROUP: chown, when it differs (a system change: planned with --root).
own() {
    if real; then
        [ "$(stat -c %U:%G "$1")" = "$2" ] && return 0
        chown "$2" "$1"
        changed "$1 owned by $2"
    elif [ "$2" != root:root ]; then   # what a root-run install makes anyway
        run chown "$2" "$1"
    fi
}

# put_dir TARGET MODE USER:GROUP
put_dir() {
    local dest
    dest=$(at "$1")
    if [ ! -d "$dest" ]; then
        mkdir -p "$dest"
        chmod "$2" "$dest"
        changed "$1/ made (mode $2)"
    elif ! same_mode "$dest" "$2"; then
        chmod "$2" "$dest"
        changed "$1/ mode $2"
    fi
    own "$1" "$3"
}

# put_file SRC TARGET MODE USER:GROUP: install SRC when the content differs; the new file never
# exists with another mode or half written (a temporary copy made private, then renamed).
put_file() {
    local src=$1 target=$2 mode=$3 dest
    dest=$(at "$target")
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest"; then
        if ! same_mode "$dest" "$mode"; then
            chmod "$mode" "$dest"
            changed "$target mode $mode"
        fi
    else
        mkdir -p "$(dirname "$dest")"
        (umask 077 && cp "$src" "$dest.stempel-new")
        chmod "$mode" "$dest.stempel-new"
        mv -f "$dest.stempel-new" "$dest"
        changed "$target"
    fi
    own "$target" "$4"
}

# put_text TARGET MODE USER:GROUP <<<TEXT
put_text() {
    local tmp
    tmp=$(mktemp "$WORK/text.XXXXXX")
    cat >"$tmp"
    put_file "$tmp" "$@"
}

# put_link TARGET LINK: LINK -> TARGET (replaced in one rename, so it never dangles).
put_link() {
    local target=$1 link=$2 dest
    dest=$(at "$link")
    if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$target" ]; then
        return 0
    fi
    if [ -e "$dest" ] && [ ! -L "$dest" ]; then
        die "$link exists and is not a symlink (an earlier manual install?): move it away, e.g. mv $link $link.old"
    fi
    mkdir -p "$(dirname "$dest")"
    ln -sfn "$target" "$dest.stempel-new"
    mv -Tf "$dest.stempel-new" "$dest"
    changed "$link -> $target"
}

# remove TARGET: delete a file, link or folder if it is there.
remove() {
    local dest
    dest=$(at "$1")
    if [ -e "$dest" ] || [ -L "$dest" ]; then
        rm -rf -- "$dest"
        changed "removed $1"
    fi
}

# --- the system -------------------------------------------------------------------------------

# ensure_packages PKG...: apt-get install those not installed.
ensure_packages() {
    if ! real; then
        run apt-get update
        run apt-get install -y --no-install-recommends "$@"
        return 0
    fi
    local pkg missing=()
    for pkg in "$@"; do
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "  installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    changed "Debian packages ${missing[*]}"
}

# ensure_user NAME HOME [GROUP...]: a system user with its own group, also in each GROUP that
# exists here (a group missing means this is not Raspberry Pi OS: warned, not made up).
ensure_user() {
    local name=$1 home=$2 group
    shift 2
    if ! real; then
        run useradd --system --user-group --home-dir "$home" --no-create-home --shell /usr/sbin/nologin "$name"
        if [ $# -gt 0 ]; then run usermod --append --groups "$(IFS=,; printf '%s' "$*")" "$name"; fi
        return 0
    fi
    if ! getent passwd "$name" >/dev/null; then
        local own_group=(--user-group)
        getent group "$name" >/dev/null && own_group=(--gid "$name")
        useradd --system "${own_group[@]}" --home-dir "$home" --no-create-home --shell /usr/sbin/nologin "$name"
        changed "user $name"
    fi
    for group in "$@"; do
        if ! getent group "$group" >/dev/null; then
            warn "there is no group $group here (not Raspberry Pi OS?): user $name is not in it"
            continue
        fi
        [[ " $(id -nG "$name") " == *" $group "* ]] && continue
        usermod --append --groups "$group" "$name"
        changed "user $name in group $group"
    done
}

# Is systemd the running init? Not in a chroot (an SD card image being built) or a container:
# there units are installed and enabled, and start at the first boot (as Debian's own packages do).
systemd_running() { [ -d /run/systemd/system ]; }

# put_unit NAME: systemd/NAME of the checkout, as it is, to /etc/systemd/system/NAME.
put_unit() {
    local before=$CHANGES
    [ -f "$STEMPEL_SRC/systemd/$1" ] || die "$STEMPEL_SRC/systemd/$1 is missing: run the script from a Stempel checkout"
    put_file "$STEMPEL_SRC/systemd/$1" "/etc/systemd/system/$1" 0644 root:root
    if ! real || { [ "$CHANGES" -ne "$before" ] && systemd_running; }; then run systemctl daemon-reload; fi
}

# start_unit UNIT RESTART: enable it; start it if it is not running, restart it if RESTART=yes.
# A unit that does not start is warned about, not fatal: the final check tells why.
start_unit() {
    local unit=$1 restart=$2
    if ! real; then
        run systemctl enable "$unit"
        run systemctl restart "$unit"
        return 0
    fi
    if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        systemctl enable --quiet "$unit"
        changed "enabled $unit"
    fi
    if ! systemd_running; then
        say "  $unit: enabled, not started (systemd is not running here: it starts at boot)"
    elif ! systemctl is-active --quiet "$unit"; then
        systemctl start "$unit" || warn "$unit did not start: journalctl -u $unit -n 50"
        changed "started $unit"
    elif [ "$restart" = yes ]; then
        systemctl restart "$unit" || warn "$unit did not restart: journalctl -u $unit -n 50"
        changed "restarted $unit"
    fi
}

# stop_unit UNIT FILE: disable and stop UNIT, when its unit FILE is installed.
stop_unit() {
    [ -e "$(at "/etc/systemd/system/$2")" ] || return 0
    if ! real; then
        run systemctl disable --now "$1"
    elif systemctl is-enabled --quiet "$1" 2>/dev/null || { systemd_running && systemctl is-active --quiet "$1"; }; then
        if systemd_running; then systemctl disable --quiet --now "$1"; else systemctl disable --quiet "$1"; fi
        changed "stopped and disabled $1"
    fi
}

# --- the release ------------------------------------------------------------------------------

release_version() {
    if [ -n "$WHEEL" ]; then
        basename "$WHEEL" | cut -d- -f2
    else
        sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$SOURCE/pyproject.toml" | head -n 1
    fi
}

# What the release is built from, as one hash: the wheel, or the package's files in the tree.
source_fingerprint() {
    if [ -n "$WHEEL" ]; then
        sha256sum <"$WHEEL" | cut -c1-16
        return 0
    fi
    local parts=(pyproject.toml) part
    for part in kiosk cloud; do
        if [ -d "$SOURCE/$part" ]; then parts+=("$part"); fi
    done
    (cd "$SOURCE" && find "${parts[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# set_source DIR / set_wheel FILE: the --source and --wheel options.
set_source() { [ -f "$1/pyproject.toml" ] || die "--source $1: no pyproject.toml there"; SOURCE=$(cd "$1" && pwd); }
set_wheel() {
    [[ "$1" == *.whl && -f "$1" ]] || die "--wheel $1: not a wheel file (stempel-VERSION-py3-none-any.whl)"
    WHEEL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
}

# install_release EXTRAS: build releases/<version> unless it is complete, then point current at it.
# EXTRAS is pip's "[postgres]" or "".
install_release() {
    local extras=$1 version fingerprint rel spec
    version=$(release_version)
    [[ "$version" =~ ^[0-9A-Za-z.+_-]+$ ]] || die "cannot tell the version of $SOURCE$WHEEL (pyproject.toml: version = \"...\")"
    fingerprint=$(source_fingerprint)
    rel=$OPT/releases/$version
    if [ -f "$(at "$rel/.stempel-release")" ]; then
        grep -qx "fingerprint=$fingerprint" "$(at "$rel/.stempel-release")" ||
            warn "release $version in $rel was built from other sources; it stays as it is (a release is never rebuilt in place, so going back always finds what ran before): raise the version in pyproject.toml to install these"
    else
        remove "$rel"   # a half-built release from an interrupted run
        mkdir -p "$(at "$rel")"
        spec=${WHEEL:-$SOURCE}$extras
        # numpy<2: Debian's picamera2 and simplejpeg are built against numpy 1.x and fail to import
        # under numpy 2 ("numpy.dtype size changed"); Bookworm's own numpy is older than Stempel needs.
        printf '%s\n' "numpy<2" >"$(at "$rel/constraints.txt")"
        run "$SYSTEM_PYTHON" -m venv --system-site-packages "$rel"
        run "$rel/bin/pip" install --quiet --no-cache-dir --constraint "$rel/constraints.txt" "$spec"
        printf 'version=%s\nfingerprint=%s\nsource=%s\n' "$version" "$fingerprint" "${WHEEL:-$SOURCE}" \
            >"$(at "$rel/.stempel-release")"
        changed "release $version built in $rel"
    fi
    put_link "releases/$version" "$OPT/current"
    put_link current "$OPT/venv"
}

# finish [WHAT]: the summary line; WHAT says why nothing changed.
finish() {
    if [ "$CHANGES" -eq 0 ]; then
        say "no changes: ${1:-everything was already in place}"
    elif [ "$CHANGES" -eq 1 ]; then
        say "1 change"
    else
        say "$CHANGES changes"
    fi
    if ! real; then
        say "--root $ROOT: files written there; system commands planned above: $PLANNED, none run"
    fi
}
