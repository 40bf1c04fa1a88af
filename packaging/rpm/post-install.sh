# Like %systemd_post: enabled on first install, not started.
install -d -o promfed -g promfed -m 0755 /var/lib/promfed
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable promfed.service >/dev/null 2>&1 || :
fi
