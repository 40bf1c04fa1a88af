# promfed runs as its own system user, in group prometheus when that exists.
getent group promfed >/dev/null || groupadd -r promfed
getent passwd promfed >/dev/null || \
    useradd -r -g promfed -d /var/lib/promfed -s /sbin/nologin -c "promfed daemon" promfed
if getent group prometheus >/dev/null; then
    usermod -a -G prometheus promfed || :
fi
