# Like %systemd_postun_with_restart; on removal, drop promfed's own state.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    systemctl try-restart promfed.service >/dev/null 2>&1 || :
else
    rm -rf /var/lib/promfed
    rm -f /var/lib/prometheus/node-exporter/promfed.prom
fi
