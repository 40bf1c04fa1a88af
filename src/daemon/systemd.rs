//! Telling systemd what the daemon is doing (sd_notify). Messages go through
//! one thread of their own, in order: a notify socket whose reader lags
//! must never stall the daemon (sending to a full datagram queue blocks).
//! Without `NOTIFY_SOCKET` every message is dropped there.

use std::sync::OnceLock;
use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};
use std::time::Duration;

use sd_notify::NotifyState;

enum Message {
    Ready(String),
    Reloading,
    Status(String),
    Watchdog,
    Stopping,
    /// Answers once everything before it was sent.
    Flush(SyncSender<()>),
}

fn sender() -> &'static Sender<Message> {
    static SENDER: OnceLock<Sender<Message>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (tx, rx) = channel::<Message>();
        std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for message in rx {
                    let result = match message {
                        Message::Ready(s) => {
                            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&s)])
                        }
                        Message::Reloading => match NotifyState::monotonic_usec_now() {
                            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
                            Err(_) => sd_notify::notify(&[NotifyState::Reloading]),
                        },
                        Message::Status(s) => sd_notify::notify(&[NotifyState::Status(&s)]),
                        Message::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                        Message::Stopping => sd_notify::notify(&[
                            NotifyState::Stopping,
                            NotifyState::Status("stopping"),
                        ]),
                        Message::Flush(done) => {
                            let _ = done.send(());
                            Ok(())
                        }
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "cannot notify systemd: {e}");
                    }
                }
            })
            .expect("the sd-notify thread starts");
        tx
    })
}

fn send(message: Message) {
    let _ = sender().send(message);
}

pub fn ready(status: &str) {
    send(Message::Ready(status.to_string()));
}

/// Before re-reading everything on SIGHUP; `ready` follows when done.
pub fn reloading() {
    send(Message::Reloading);
}

pub fn status(status: &str) {
    send(Message::Status(status.to_string()));
}

pub fn watchdog() {
    send(Message::Watchdog);
}

/// Says so, and waits a little for it to be sent before the process exits.
pub fn stopping() {
    send(Message::Stopping);
    let (done, wait) = sync_channel(1);
    send(Message::Flush(done));
    let _ = wait.recv_timeout(Duration::from_millis(300));
}

/// How often to pet the watchdog: half its interval, if the unit set one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
