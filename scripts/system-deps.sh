#!/usr/bin/env bash
# Install the Debian packages Stempel needs when they are missing (idempotent).
#   libzbar0         the QR decoder behind pyzbar
#   mosquitto        the MQTT broker (the demo and the integration tests start private ones)
#   python3-venv     so `python3 -m venv` works on a fresh Raspberry Pi OS / Debian
# With `test` (as `make test` calls it), also:
#   postgresql       when no server answers at 127.0.0.1:5432 (or STEMPEL_TEST_PG=private): the tests
#                    start a private throwaway cluster from its binaries (tests/postgres.py). Only the
#                    binaries are wanted: the package's `main` cluster is neither created nor started.
#   chromium, chromium-driver   the headless browser of the browser tests (tests/browser.py drives
#                    /usr/bin/chromium through /usr/bin/chromedriver; nothing downloads a browser).
#   systemd          for `systemd-analyze verify` of the unit files in systemd/ (tests/test_systemd_units.py);
#                    nothing is started: the package only has to be there, not running as PID 1.
#   ShellCheck (package shellcheck)   lints every script in scripts/ (tests/test_install_scripts.py).
set -euo pipefail

for_tests=false
[ "${1:-}" = test ] && for_tests=true

missing=()
ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' || missing+=(libzbar0)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if $for_tests; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
fi

# Does the test suite need PostgreSQL's server binaries here? Not when STEMPEL_TEST_PG names a
# server, nor when one listens at 127.0.0.1:5432; yes for STEMPEL_TEST_PG=private.
pg_binaries_needed() {
    $for_tests || return 1
    command -v initdb >/dev/null 2>&1 && return 1
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 1
    case "${STEMPEL_TEST_PG:-}" in
        private) return 0 ;;
        "") ! timeout 5 bash -c ': </dev/tcp/127.0.0.1/5432' 2>/dev/null ;;
        *) return 1 ;;
    esac
}
postgres=false
pg_binaries_needed && postgres=true

if [ ${#missing[@]} -eq 0 ] && ! $postgres; then
    exit 0
fi

wanted=("${missing[@]}")
$postgres && wanted+=(postgresql)
echo "stempel: installing Debian packages: ${wanted[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "stempel: need root to install ${wanted[*]}; run: apt-get install ${wanted[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() { "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
"${sudo[@]}" apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
$postgres || exit 0

# Installing a server version creates and starts a `main` cluster unless createcluster.conf says
# create_main_cluster = false. Say so for this install only: the file is put back byte for byte.
apt_install postgresql-common
conf=/etc/postgresql-common/createcluster.conf
saved="$conf.stempel-saved"
if [ -e "$conf" ]; then "${sudo[@]}" cp -p "$conf" "$saved"; fi
restore() { if [ -e "$saved" ]; then "${sudo[@]}" mv -f "$saved" "$conf"; else "${sudo[@]}" rm -f "$conf"; fi; }
trap restore EXIT
echo "create_main_cluster = false" | "${sudo[@]}" tee -a "$conf" >/dev/null
apt_install postgresql
