# Like %systemd_post: enabled on first install, not started.
install -d -o promfed -g promfed -m 0755 /var/lib/promfed
# How the folders the documented step opens to promfed were before it, so
# that erasing the package puts them back. Recorded once.
if [ ! -e /var/lib/promfed/preinstall-modes ]; then
    for path in /etc/prometheus /var/lib/prometheus/node-exporter; do
        [ -e "$path" ] && stat -c '%U:%G %a %n' "$path"
    done >/var/lib/promfed/preinstall-modes || :
fi
# Prometheus needs one inotify instance per cluster: apply the shipped
# limit now (it applies at every boot), raising it, never lowering it.
current=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
if [ "$current" -lt 8192 ]; then
    sysctl -q -w fs.inotify.max_user_instances=8192 >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable promfed.service >/dev/null 2>&1 || :
fi
