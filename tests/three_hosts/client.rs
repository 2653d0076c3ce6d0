//! A test client inside a network namespace, and the ledger of what came
//! back for every message id.
//!
//! Network namespaces are per thread: [`NsClient`] runs a thread that
//! moves itself into the namespace (`setns(2)` on `/run/netns/NAME`), then
//! runs a single-threaded tokio runtime with a [`hostmux_host::Client`]
//! connected from there. The test thread hands it [`Stream`]s of frames to
//! write (pipelined, or paced); a reader task records every answer in the
//! shared [`Ledger`], which the test thread waits on with a deadline and
//! turns into a [`Tally`]: replies, notices by reason, ids answered more
//! than once, ids never answered.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hostmux_host::Client;
use hostmux_wire::{FrameHeader, FrameKind, Sender};

use super::cluster::CLIENT_TOKEN;

/// What one answer was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A data frame: the reply, from the proc at `sender_addr`.
    Reply { sender_addr: String },
    /// An `Undeliverable` notice with this reason (its `Debug` name).
    Notice(String),
    /// Anything else (a notice that does not decode, a control response).
    Other(String),
}

#[derive(Debug, Default, Clone)]
struct Entry {
    sent_at: Option<Instant>,
    answers: u32,
    first: Option<(Answer, Instant)>,
}

#[derive(Debug, Default)]
struct LedgerState {
    entries: Vec<Entry>,
    answers: u64,
    /// Answers whose id was never sent.
    strays: u64,
    /// Why the connection ended, once it did.
    closed: Option<String>,
}

impl LedgerState {
    fn entry(&mut self, id: u64) -> &mut Entry {
        let index = usize::try_from(id).expect("id fits");
        if self.entries.len() <= index {
            self.entries.resize(index + 1, Entry::default());
        }
        &mut self.entries[index]
    }
}

/// Every id sent and every answer received, shared by the client's thread
/// and the test.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    state: Mutex<LedgerState>,
    changed: Condvar,
}

impl Ledger {
    fn sent(&self, ids: Range<u64>, at: Instant) {
        let mut state = self.state.lock().unwrap();
        for id in ids {
            state.entry(id).sent_at = Some(at);
        }
    }

    fn answered(&self, id: u64, answer: Answer) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        state.answers += 1;
        // An id past every id sent is a stray too (and must not grow the
        // table).
        match state
            .entries
            .get_mut(id as usize)
            .filter(|e| e.sent_at.is_some())
        {
            Some(entry) => {
                entry.answers += 1;
                if entry.first.is_none() {
                    entry.first = Some((answer, now));
                }
            }
            None => state.strays += 1,
        }
        self.changed.notify_all();
    }

    fn closed(&self, why: String) {
        self.state.lock().unwrap().closed = Some(why);
        self.changed.notify_all();
    }

    /// Answers received so far (all ids).
    pub(crate) fn answers(&self) -> u64 {
        self.state.lock().unwrap().answers
    }

    /// Waits until the ledger holds at least `count` answers, at most
    /// `timeout`; returns whether it does.
    pub(crate) fn wait_for_answers(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        while state.answers < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }

    /// Waits until every id in `ids` has an answer, or no answer arrived
    /// for `stall`, or `deadline` passed; then tallies `ids`.
    pub(crate) fn wait(&self, ids: Range<u64>, stall: Duration, deadline: Duration) -> Tally {
        let started = Instant::now();
        let mut state = self.state.lock().unwrap();
        let mut last_count = state.answers;
        let mut last_progress = Instant::now();
        loop {
            let unanswered = ids
                .clone()
                .filter(|&id| {
                    state
                        .entries
                        .get(id as usize)
                        .is_none_or(|e| e.answers == 0)
                })
                .count();
            if unanswered == 0 {
                break;
            }
            if state.answers != last_count {
                last_count = state.answers;
                last_progress = Instant::now();
            }
            if last_progress.elapsed() >= stall || started.elapsed() >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        let waited = started.elapsed();
        drop(state);
        let mut tally = self.tally(ids);
        tally.waited = waited;
        tally
    }

    /// What came back for `ids` so far.
    pub(crate) fn tally(&self, ids: Range<u64>) -> Tally {
        let state = self.state.lock().unwrap();
        let mut tally = Tally {
            ids: ids.clone(),
            strays: state.strays,
            closed: state.closed.clone(),
            ..Tally::default()
        };
        for id in ids {
            let Some(entry) = state.entries.get(id as usize) else {
                tally.unsent += 1;
                continue;
            };
            if entry.sent_at.is_none() {
                tally.unsent += 1;
                continue;
            }
            match entry.answers {
                0 => tally.missing.push(id),
                1 => {}
                _ => tally.duplicates.push(id),
            }
            match entry.first.as_ref().map(|(answer, _)| answer) {
                Some(Answer::Reply { sender_addr }) => {
                    tally.replies += 1;
                    *tally.reply_from.entry(sender_addr.clone()).or_default() += 1;
                }
                Some(Answer::Notice(reason)) => {
                    *tally.notices.entry(reason.clone()).or_default() += 1
                }
                Some(Answer::Other(what)) => *tally.other.entry(what.clone()).or_default() += 1,
                None => {}
            }
        }
        tally
    }

    /// For `ids`: when each was sent and, if answered, how and when first.
    pub(crate) fn timeline(&self, ids: Range<u64>) -> Vec<(Instant, Option<(Answer, Instant)>)> {
        let state = self.state.lock().unwrap();
        ids.filter_map(|id| {
            let entry = state.entries.get(id as usize)?;
            Some((entry.sent_at?, entry.first.clone()))
        })
        .collect()
    }
}

/// What came back for a range of ids.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) ids: Range<u64>,
    /// Ids in the range never written (the stream failed before them).
    pub(crate) unsent: u64,
    /// Data replies, and from which host address.
    pub(crate) replies: u64,
    pub(crate) reply_from: BTreeMap<String, u64>,
    /// Notices by reason.
    pub(crate) notices: BTreeMap<String, u64>,
    /// Other answers by kind.
    pub(crate) other: BTreeMap<String, u64>,
    /// Ids answered more than once.
    pub(crate) duplicates: Vec<u64>,
    /// Ids never answered.
    pub(crate) missing: Vec<u64>,
    /// Answers (any range) for ids never sent.
    pub(crate) strays: u64,
    /// How the connection ended, if it did.
    pub(crate) closed: Option<String>,
    /// How long [`Ledger::wait`] waited.
    pub(crate) waited: Duration,
}

impl Tally {
    /// Panics (showing the tally) unless every id was sent and answered
    /// exactly once, by a reply or a notice.
    #[track_caller]
    pub(crate) fn assert_exactly_once(&self, what: &str) {
        assert!(
            self.unsent == 0
                && self.missing.is_empty()
                && self.duplicates.is_empty()
                && self.other.is_empty()
                && self.strays == 0,
            "{what}: not every id answered exactly once: {self}"
        );
    }

    /// Notices of reason `reason`.
    pub(crate) fn notices_of(&self, reason: &str) -> u64 {
        self.notices.get(reason).copied().unwrap_or(0)
    }

    /// Ids in the range (sent or not).
    pub(crate) fn len(&self) -> u64 {
        self.ids.end - self.ids.start
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = |ids: &[u64]| {
            let shown: Vec<String> = ids.iter().take(8).map(u64::to_string).collect();
            format!(
                "{}{}",
                shown.join(","),
                if ids.len() > 8 { ",…" } else { "" }
            )
        };
        write!(
            f,
            "ids {}..{}: replies={} {:?} notices={:?} other={:?} missing={} [{}] duplicates={} [{}] unsent={} strays={} waited={:.1}s",
            self.ids.start,
            self.ids.end,
            self.replies,
            self.reply_from,
            self.notices,
            self.other,
            self.missing.len(),
            first(&self.missing),
            self.duplicates.len(),
            first(&self.duplicates),
            self.unsent,
            self.strays,
            self.waited.as_secs_f64(),
        )?;
        if let Some(closed) = &self.closed {
            write!(f, " connection ended: {closed}")?;
        }
        Ok(())
    }
}

/// Frames to write: `ids` to proc `dest_name` on the host at `dest_addr`,
/// each with a `payload_len`-byte payload, `batch` frames per write, with
/// `every` between writes (`None`: as fast as the socket takes them).
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub(crate) ids: Range<u64>,
    pub(crate) dest_name: String,
    pub(crate) dest_addr: String,
    pub(crate) payload_len: usize,
    pub(crate) batch: usize,
    pub(crate) every: Option<Duration>,
}

impl Stream {
    /// `ids` pipelined to `dest_name` at `dest_addr`, 64-byte payloads.
    pub(crate) fn pipelined(ids: Range<u64>, dest_name: &str, dest_addr: &str) -> Stream {
        Stream {
            ids,
            dest_name: dest_name.to_owned(),
            dest_addr: dest_addr.to_owned(),
            payload_len: 64,
            batch: 256,
            every: None,
        }
    }

    /// The same, `batch` frames every `every`.
    pub(crate) fn paced(self, batch: usize, every: Duration) -> Stream {
        Stream {
            batch,
            every: Some(every),
            ..self
        }
    }
}

/// A stream handed to the client: [`wait_written`](Self::wait_written)
/// says when all its frames were written.
pub(crate) struct Writing {
    done: mpsc::Receiver<Result<(), String>>,
}

impl Writing {
    /// Waits (bounded) until the stream's frames are all written.
    #[track_caller]
    pub(crate) fn wait_written(self, timeout: Duration) -> Result<(), String> {
        self.done
            .recv_timeout(timeout)
            .unwrap_or_else(|e| Err(format!("stream not written within {timeout:?}: {e}")))
    }
}

/// A client connected from inside a network namespace (see the module
/// docs).
pub(crate) struct NsClient {
    pub(crate) ledger: Arc<Ledger>,
    commands: Option<tokio::sync::mpsc::UnboundedSender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A stream to write, and where to say that it was written (or why not).
type Command = (Stream, mpsc::Sender<Result<(), String>>);
type Commands = tokio::sync::mpsc::UnboundedReceiver<Command>;

impl NsClient {
    /// Starts the client's thread in the namespace at `netns` (a
    /// `/run/netns/NAME` file), connects to `target` (`IP:PORT`) as `name`
    /// with the client token, and returns once the hello was accepted.
    pub(crate) fn connect(netns: PathBuf, target: &str, name: &str) -> Result<NsClient, String> {
        let ledger = Arc::new(Ledger::default());
        let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (connected_tx, connected) = mpsc::channel();
        let (target, name, thread_ledger) = (target.to_owned(), name.to_owned(), ledger.clone());
        let thread = std::thread::Builder::new()
            .name(format!("client {name}"))
            .spawn(move || {
                client_thread(netns, target, name, thread_ledger, receiver, connected_tx)
            })
            .expect("spawn the client thread");
        let outcome = connected
            .recv_timeout(super::cluster::STEP_DEADLINE)
            .unwrap_or_else(|e| Err(format!("no hello answer: {e}")));
        let client = NsClient {
            ledger,
            commands: Some(commands),
            thread: Some(thread),
        };
        outcome.map(|()| client)
    }

    /// Hands `stream` to the client; it is written while the test goes on.
    pub(crate) fn send(&self, stream: Stream) -> Writing {
        let (done_tx, done) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("client running")
            .send((stream, done_tx))
            .expect("the client thread is gone");
        Writing { done }
    }

    /// Sends `stream`, waits until it is written and answered (or stalled
    /// for `stall`, at most `deadline`), and tallies it.
    pub(crate) fn exchange(&self, stream: Stream, stall: Duration, deadline: Duration) -> Tally {
        let ids = stream.ids.clone();
        let written = self.send(stream).wait_written(deadline);
        let mut tally = self.ledger.wait(ids, stall, deadline);
        if let Err(e) = written {
            tally.closed.get_or_insert(e);
        }
        tally
    }
}

impl Drop for NsClient {
    fn drop(&mut self) {
        // Closing the command channel ends the client's thread.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client_thread(
    netns: PathBuf,
    target: String,
    name: String,
    ledger: Arc<Ledger>,
    commands: Commands,
    connected: mpsc::Sender<Result<(), String>>,
) {
    let entered = std::fs::File::open(&netns)
        .map_err(|e| format!("open {}: {e}", netns.display()))
        .and_then(|ns| {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("setns into {}: {e}", netns.display()))
        });
    if let Err(e) = entered {
        let _ = connected.send(Err(e));
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run_client(target, name, ledger, commands, connected));
}

async fn run_client(
    target: String,
    name: String,
    ledger: Arc<Ledger>,
    mut commands: Commands,
    connected: mpsc::Sender<Result<(), String>>,
) {
    let client = match tokio::time::timeout(
        super::cluster::STEP_DEADLINE,
        Client::connect_tcp(&target, &name, Some(CLIENT_TOKEN), "service"),
    )
    .await
    {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let _ = connected.send(Err(e.to_string()));
            return;
        }
        Err(_) => {
            let _ = connected.send(Err("hello not answered in time".to_owned()));
            return;
        }
    };
    let _ = connected.send(Ok(()));
    let (mut writer, mut reader) = client.into_split();
    let reader_ledger = ledger.clone();
    let reading = tokio::spawn(async move {
        loop {
            match reader.recv().await {
                Ok(Some(frame)) => {
                    let (id, answer) = match frame.kind {
                        FrameKind::Data => (
                            frame.message_id,
                            Answer::Reply {
                                sender_addr: frame.sender_addr.clone(),
                            },
                        ),
                        FrameKind::Undeliverable => match frame.undeliverable() {
                            Some(notice) => (
                                notice.original_message_id,
                                Answer::Notice(format!("{:?}", notice.reason)),
                            ),
                            None => (frame.message_id, Answer::Other("bad notice".to_owned())),
                        },
                        other => (frame.message_id, Answer::Other(format!("{other:?}"))),
                    };
                    reader_ledger.answered(id, answer);
                }
                Ok(None) => return reader_ledger.closed("closed by the host".to_owned()),
                Err(e) => return reader_ledger.closed(e.to_string()),
            }
        }
    });
    let me = name.clone();
    while let Some((stream, done)) = commands.recv().await {
        let outcome = write_stream(&mut writer, &me, &stream, &ledger).await;
        let _ = done.send(outcome);
    }
    reading.abort();
}

async fn write_stream(
    writer: &mut hostmux_host::ClientWriter,
    me: &str,
    stream: &Stream,
    ledger: &Ledger,
) -> Result<(), String> {
    let payload = vec![0x5a; stream.payload_len];
    let mut ticks = stream.every.map(|every| {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut next = stream.ids.start;
    while next < stream.ids.end {
        if let Some(ticks) = ticks.as_mut() {
            ticks.tick().await;
        }
        let end = (next + stream.batch as u64).min(stream.ids.end);
        for id in next..end {
            let header = FrameHeader {
                dest_addr: &stream.dest_addr,
                sender: Sender::Client { name: me },
                ..FrameHeader::data(&stream.dest_name, id)
            };
            writer
                .queue_frame(&header, &payload)
                .map_err(|e| format!("encoding frame {id}: {e}"))?;
        }
        // Marked sent before the write: an answer may come before the
        // write returns.
        ledger.sent(next..end, Instant::now());
        writer
            .flush()
            .await
            .map_err(|e| format!("writing frames {next}..{end}: {e}"))?;
        next = end;
    }
    Ok(())
}
