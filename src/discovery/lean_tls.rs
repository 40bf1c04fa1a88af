//! A TLS client connection that holds no buffer while it waits.
//!
//! A thousand clusters keep two watches open for hours, and most of that
//! time nothing arrives. rustls's ordinary connection keeps a 4 KiB receive
//! buffer from its first read to its end; its unbuffered API lets the caller
//! own the buffers instead. Here the buffer of received TLS bytes exists
//! while bytes are there, and is freed once they are all decrypted.
//!
//! `read` is cancel-safe (a watch is read inside `select!`): it waits for
//! the socket to be readable, and everything after that runs without an
//! await.

use std::io::{self, ErrorKind};
use std::sync::Arc;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncryptError, UnbufferedStatus,
};
use rustls::{ClientConfig, Error};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How much room each read from the socket gets; a record of up to 16 KiB
/// grows the buffer by as many reads as it takes.
const READ_ROOM: usize = 4 << 10;
/// The most received bytes held undecrypted: a record is at most ~16.6 KiB.
const MAX_INCOMING: usize = 64 << 10;

pub struct LeanTls {
    conn: UnbufferedClientConnection,
    socket: TcpStream,
    /// Received TLS bytes not yet decrypted; empty (no allocation) between
    /// records.
    incoming: Vec<u8>,
    /// Set once the peer said close_notify, or closed the socket.
    closed: bool,
}

fn tls_error(e: Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

impl LeanTls {
    /// Shakes hands over `socket` and sends `request` as the first data.
    pub async fn connect(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        mut socket: TcpStream,
        request: &[u8],
    ) -> io::Result<LeanTls> {
        let mut conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        let mut incoming = Vec::new();
        let mut outgoing = Vec::new();
        // A handshake is a handful of steps; a server that keeps it going
        // longer is not one to talk to.
        for _ in 0..64 {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming);
            match state.map_err(tls_error)? {
                ConnectionState::EncodeTlsData(mut state) => {
                    let at = outgoing.len();
                    outgoing.resize(at + 2048, 0);
                    let written = match state.encode(&mut outgoing[at..]) {
                        Err(EncodeError::InsufficientSize(need)) => {
                            outgoing.resize(at + need.required_size, 0);
                            state.encode(&mut outgoing[at..])
                        }
                        other => other,
                    }
                    .map_err(|e| protocol(&e.to_string()))?;
                    outgoing.truncate(at + written);
                }
                ConnectionState::TransmitTlsData(state) => {
                    socket.write_all(&outgoing).await?;
                    outgoing = Vec::new();
                    state.done();
                }
                ConnectionState::BlockedHandshake => {
                    read_more(&mut socket, &mut incoming).await?;
                }
                ConnectionState::WriteTraffic(mut state) => {
                    let sealed = encrypt(&mut state, request)?;
                    // Done with what the handshake received; anything after
                    // it (a TLS 1.3 ticket) is read with the answer.
                    incoming.drain(..discard);
                    socket.write_all(&sealed).await?;
                    return Ok(LeanTls {
                        conn,
                        socket,
                        incoming,
                        closed: false,
                    });
                }
                ConnectionState::Closed | ConnectionState::PeerClosed => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ));
                }
                _ => return Err(protocol("an unexpected TLS handshake state")),
            }
            incoming.drain(..discard);
        }
        Err(protocol("a TLS handshake that does not end"))
    }

    /// Appends decrypted bytes to `into`: how many, 0 at the end of the
    /// stream. Cancel-safe.
    pub async fn read(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            let got = self.decrypt(into)?;
            if got > 0 || self.closed {
                return Ok(got);
            }
            self.socket.readable().await?;
            self.receive()?;
        }
    }

    /// Decrypts every whole record received; frees the buffer when nothing
    /// is left in it.
    fn decrypt(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        let mut got = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let more = match state.map_err(tls_error)? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let AppDataRecord {
                            discard: used,
                            payload,
                        } = record.map_err(tls_error)?;
                        discard += used;
                        into.extend_from_slice(payload);
                        got += payload.len();
                    }
                    true
                }
                // A post-handshake message for us to answer (a key update).
                ConnectionState::EncodeTlsData(mut state) => {
                    let mut out = vec![0; 1024];
                    let n = state
                        .encode(&mut out)
                        .map_err(|e| protocol(&e.to_string()))?;
                    out.truncate(n);
                    send_now(&self.socket, &out)?;
                    true
                }
                ConnectionState::TransmitTlsData(state) => {
                    state.done();
                    true
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.closed = true;
                    false
                }
                // Nothing whole is left to decrypt.
                ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => false,
                _ => return Err(protocol("an unexpected TLS state")),
            };
            self.incoming.drain(..discard);
            if !more {
                break;
            }
        }
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        Ok(got)
    }

    /// Reads what the socket has, without waiting.
    fn receive(&mut self) -> io::Result<()> {
        let at = self.incoming.len();
        if at >= MAX_INCOMING {
            return Err(protocol("a TLS record larger than TLS allows"));
        }
        self.incoming.resize(at + READ_ROOM, 0);
        match self.socket.try_read(&mut self.incoming[at..]) {
            Ok(0) => {
                self.incoming.truncate(at);
                // Closed without close_notify: the end all the same.
                self.closed = true;
                Ok(())
            }
            Ok(n) => {
                self.incoming.truncate(at + n);
                Ok(())
            }
            Err(e) => {
                self.incoming.truncate(at);
                if e.kind() == ErrorKind::WouldBlock {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Sends a small message at once (the socket's buffer has room for it);
/// used only for the rare answers TLS owes while reading (a key update).
fn send_now(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    for _ in 0..100 {
        if bytes.is_empty() {
            return Ok(());
        }
        match socket.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        ErrorKind::WouldBlock,
        "cannot answer the server's TLS message",
    ))
}

fn encrypt(
    state: &mut rustls::unbuffered::WriteTraffic<'_, ClientConnectionData>,
    data: &[u8],
) -> io::Result<Vec<u8>> {
    let mut out = vec![0; data.len() + 256];
    let n = match state.encrypt(data, &mut out) {
        Err(EncryptError::InsufficientSize(need)) => {
            out.resize(need.required_size, 0);
            state.encrypt(data, &mut out)
        }
        other => other,
    }
    .map_err(|e| protocol(&e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

/// Reads at least one more byte of the handshake.
async fn read_more(socket: &mut TcpStream, incoming: &mut Vec<u8>) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    if incoming.len() >= MAX_INCOMING {
        return Err(protocol(
            "a TLS handshake message larger than promfed reads",
        ));
    }
    let at = incoming.len();
    incoming.resize(at + READ_ROOM, 0);
    let n = socket.read(&mut incoming[at..]).await?;
    incoming.truncate(at + n);
    if n == 0 {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "the server closed the connection during the TLS handshake",
        ));
    }
    Ok(())
}
