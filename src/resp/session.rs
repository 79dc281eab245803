//! One client connection's state and the execution of its pipelined commands against the
//! node, with replies kept in request order.
//!
//! The server hands every command it has read to [`Session::execute`], then calls
//! [`Session::finish`] and writes the replies in one go. Commands that only need
//! the connection are answered at once; increments and decrements are gathered and sent
//! to the event loop as ONE [`ClientOps::Many`], so the operations of a pipeline share a
//! group commit; reads go out as one query per counter, all sent before any answer is
//! awaited. The node sees a pipeline in its order: before a read is sent, every
//! operation before it has been answered (so it is durable and applied), and before an
//! operation is sent, every read before it has been answered. A connection's own writes
//! are therefore visible to its later reads, as in Redis.
//!
//! An answer that must wait for the node leaves a slot; any reply ready meanwhile is
//! parked in `deferred` behind it, and [`Session::finish`] assembles everything in order.
//!
//! `MULTI` queues checked copies of the commands after it; `EXEC` runs them like a
//! pipeline inside one array reply, so their increments share one batch (unless a read
//! is queued between them). A command refused while queueing makes `EXEC` refuse the
//! whole transaction (`EXECABORT`), so nothing of it is applied, as in Redis.

use super::about::{self, ServerFigures};
use super::auth::Gate;
use super::command::{self, Args, Command};
use super::reply;
use crate::crdt::{LocalOp, OpError};
use crate::http::Access;
use crate::node::event_loop::{ChannelReply, ClientOps, Notify, OpReply, Query};
use crate::node::views::CounterView;
use crate::node_core::{OpFailure, MAX_BATCH};
use crate::status::NodeStatus;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::collections::VecDeque;
use std::ops::Range;

/// The node's channels, as the HTTP API uses them.
#[derive(Clone, Debug)]
pub struct NodeLink {
    pub ops: Sender<ClientOps>,
    pub queries: Sender<Query>,
}

/// The node stopped answering (it is shutting down): the connection must close.
#[derive(Debug, PartialEq, Eq)]
pub struct NodeGone;

type OpResult = Result<i64, OpFailure>;

/// A reply in request order that is not in `out` yet.
#[derive(Debug)]
enum Slot {
    /// Ready, parked in `deferred` behind an earlier reply still in flight.
    Deferred(Range<usize>),
    /// The next operation answer, as an integer.
    Op,
    /// The next counter answer as a bulk string (`GET`) or an integer (`INCRBY k 0`).
    Get { integer: bool },
    /// The next `n` counter answers: values (`MGET`) or a count of existing ones (`EXISTS`).
    Many { n: usize, exists: bool },
}

/// Requests in the node's hands whose answers arrive on `answers`, in the order asked.
/// `reply` is what new requests clone; it is dropped before waiting (and once a
/// server's round has submitted them), so that if the node drops a request unanswered
/// (it is stopping) the wait fails instead of hanging. `received` holds answers taken
/// off the channel by [`Flight::collect`] and not yet used.
struct Flight<T> {
    reply: Option<Sender<T>>,
    answers: Receiver<T>,
    received: VecDeque<T>,
}

impl<T> Flight<T> {
    fn new() -> Flight<T> {
        let (reply, answers) = crossbeam_channel::unbounded();
        Flight {
            reply: Some(reply),
            answers,
            received: VecDeque::new(),
        }
    }

    /// Where the next request is answered.
    fn reply(&self) -> Result<Sender<T>, NodeGone> {
        self.reply.clone().ok_or(NodeGone)
    }

    /// Takes the answers that have arrived off the channel, without waiting; returns
    /// whether `expected` are in hand or none will come.
    fn collect(&mut self, expected: usize) -> bool {
        while self.received.len() < expected {
            match self.answers.try_recv() {
                Ok(answer) => self.received.push_back(answer),
                Err(TryRecvError::Empty) => return false,
                // The node dropped the requests: `next` reports it gone.
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        true
    }
}

/// The next answer of `flight`; none in flight or none coming means the node is gone.
fn next<T>(flight: &mut Option<Flight<T>>) -> Result<T, NodeGone> {
    let flight = flight.as_mut().ok_or(NodeGone)?;
    match flight.received.pop_front() {
        Some(answer) => Ok(answer),
        None => flight.answers.recv().map_err(|_| NodeGone),
    }
}

/// What [`Session::execute`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Executed {
    /// Run, queued (inside `MULTI`), or refused with an answer.
    Ran,
    /// Left unrun until the operations before it are answered (an event-loop session).
    WaitsForAnswers,
}

/// Whether a command needs every operation before it answered: it reads counters or
/// the node's status, or runs a transaction that may.
fn needs_earlier_answers(command: &Command) -> bool {
    matches!(
        command,
        Command::Get(_)
            | Command::Value(_)
            | Command::MGet(_)
            | Command::Exists(_)
            | Command::Info(_)
            | Command::ConfigGet(_)
            | Command::Exec
    )
}

/// Commands queued between `MULTI` and `EXEC`: copies of their arguments.
#[derive(Debug, Default)]
struct Transaction {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Each command's arguments, as a range of `ranges`.
    commands: Vec<Range<usize>>,
    /// A command was refused while queueing: `EXEC` runs nothing.
    refused: bool,
    /// The most bytes `EXEC`'s reply can take (see [`Command::reply_bound`]).
    reply_bound: usize,
}

/// Most counter answers a session waits for at once (a round's reads beyond it wait for
/// those before them).
const MAX_READS_IN_FLIGHT: usize = MAX_BATCH;
/// Most commands one transaction may queue.
const MAX_QUEUED: usize = MAX_BATCH;
/// Most argument bytes one transaction may queue.
const MAX_QUEUED_BYTES: usize = 1 << 20;
/// Most bytes one `EXEC`'s reply may take, counted as commands are queued: room for
/// [`MAX_QUEUED`] commands each answered by an error at worst (see
/// [`Command::reply_bound`](super::command::Command::reply_bound)).
const MAX_EXEC_REPLY: usize = 2 << 20;

pub struct Session {
    id: u64,
    name: Option<Vec<u8>>,
    link: NodeLink,
    /// The replies so far, in order, ready to write.
    out: Vec<u8>,
    deferred: Vec<u8>,
    slots: Vec<Slot>,
    pending_ops: Vec<LocalOp>,
    /// Operations in flight; never at the same time as reads.
    ops: Option<Flight<OpResult>>,
    /// Operations gathered or in flight since the last settle: the answers `ops` owes.
    ops_in_flight: usize,
    /// Reads in flight; never at the same time as operations.
    reads: Option<Flight<CounterView>>,
    reads_in_flight: usize,
    transaction: Option<Transaction>,
    closing: bool,
    /// API tokens: what this connection may do.
    gate: Gate,
    /// Called by the node once a request of operations is answered (see
    /// [`Session::answered`]); set for a session driven by an event loop.
    notify: Option<Notify>,
}

impl Session {
    pub fn new(id: u64, link: NodeLink, access: Access) -> Session {
        Session {
            id,
            name: None,
            link,
            gate: Gate::new(access),
            out: Vec::with_capacity(4096),
            deferred: Vec::new(),
            slots: Vec::new(),
            pending_ops: Vec::new(),
            ops: None,
            ops_in_flight: 0,
            reads: None,
            reads_in_flight: 0,
            transaction: None,
            closing: false,
            notify: None,
        }
    }

    /// Has the node call `notify` once each request of this session's operations is
    /// answered, so a server can wait for many sessions at once and ask
    /// [`Session::answered`]; and leaves requests that would wait for those answers unrun
    /// (see [`Session::execute`]).
    pub fn notifying(mut self, notify: Notify) -> Session {
        self.notify = Some(notify);
        self
    }

    /// Whether the client asked to close (`QUIT`) or the connection must close.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Bytes of replies held so far, ready or parked.
    pub fn buffered(&self) -> usize {
        self.out.len() + self.deferred.len()
    }

    /// Runs one non-empty request. `figures` is read only by `INFO` and `CONFIG GET`.
    /// A session driven by an event loop ([`Session::notifying`]) leaves a request that
    /// would wait for operations gathered or in flight to be made durable (a read of
    /// counters, `INFO` or `CONFIG GET` after increments not yet answered, or `EXEC`
    /// then) unrun, so its server never waits for a group commit inside a round; it
    /// runs it once [`Session::answered`]. A transaction whose reads follow its own
    /// increments still waits for them inside `EXEC`.
    pub fn execute(
        &mut self,
        args: Args<'_>,
        figures: &dyn Fn() -> ServerFigures,
    ) -> Result<Executed, NodeGone> {
        self.run(args, figures, self.notify.is_some())
    }

    /// [`Session::execute`], leaving unrun what would wait for answers if `defer`.
    fn run(
        &mut self,
        args: Args<'_>,
        figures: &dyn Fn() -> ServerFigures,
        defer: bool,
    ) -> Result<Executed, NodeGone> {
        if self.transaction.is_some() && !command::runs_inside_multi(args.get(0)) {
            self.queue(args);
            return Ok(Executed::Ran);
        }
        let command = match command::parse(args).and_then(|c| self.gate.admit(&c).map(|()| c)) {
            Ok(c) => c,
            Err(refusal) => {
                self.ready(|out| reply::error(out, &refusal));
                return Ok(Executed::Ran);
            }
        };
        let ops_outstanding = !self.pending_ops.is_empty() || self.ops.is_some();
        if defer && ops_outstanding && needs_earlier_answers(&command) {
            return Ok(Executed::WaitsForAnswers);
        }
        match command {
            Command::Op(op) => self.operation(op)?,
            Command::Get(name) => self.read(&[name], Slot::Get { integer: false })?,
            Command::Value(name) => self.read(&[name], Slot::Get { integer: true })?,
            Command::MGet(names) => self.read_many(&names, false)?,
            Command::Exists(names) => self.read_many(&names, true)?,
            Command::Info(sections) => {
                let status = self.status()?;
                about::info(&mut self.out, sections, &status, &figures());
            }
            Command::ConfigGet(patterns) => {
                let status = self.status()?;
                about::config_get(&mut self.out, patterns, &status, &figures());
            }
            Command::Ping(None) => self.ready(|out| reply::simple(out, "PONG")),
            Command::Ping(Some(text)) | Command::Echo(text) => {
                self.ready(|out| reply::bulk(out, text))
            }
            Command::Select | Command::ClientSetInfo => self.ready(|out| reply::simple(out, "OK")),
            Command::Quit => self.quit(),
            Command::Reset => self.reset(),
            Command::Hello { name, token } => self.hello(name, token),
            Command::Auth(token) => self.auth(token),
            Command::ClientSetName(name) => {
                self.set_name(name);
                self.ready(|out| reply::simple(out, "OK"));
            }
            Command::ClientGetName => self.get_name(),
            Command::ClientId => {
                let id = self.id as i64;
                self.ready(|out| reply::integer(out, id));
            }
            Command::CommandInfo(names) => self.ready(|out| about::command_info(out, names)),
            Command::CommandCount => self.ready(about::command_count),
            Command::CommandDocs(names) => self.ready(|out| about::command_docs(out, names)),
            Command::Multi => self.multi(),
            Command::Discard => self.discard(),
            Command::Exec => self.exec(figures)?,
        }
        Ok(Executed::Ran)
    }

    /// `MGET` (values) or `EXISTS` (how many were ever written) of `names`.
    fn read_many(&mut self, names: &[String], exists: bool) -> Result<(), NodeGone> {
        let slot = Slot::Many {
            n: names.len(),
            exists,
        };
        self.read(names, slot)
    }

    fn quit(&mut self) {
        self.ready(|out| reply::simple(out, "OK"));
        self.closing = true;
    }

    fn reset(&mut self) {
        self.name = None;
        self.transaction = None;
        self.gate.reset();
        self.ready(|out| reply::simple(out, "RESET"));
    }

    fn auth(&mut self, token: &[u8]) {
        match self.gate.authenticate(token) {
            Ok(()) => self.ready(|out| reply::simple(out, "OK")),
            Err(refusal) => self.ready(|out| reply::error(out, &refusal)),
        }
    }

    fn hello(&mut self, name: Option<&[u8]>, token: Option<&[u8]>) {
        if let Some(Err(refusal)) = token.map(|t| self.gate.authenticate(t)) {
            self.ready(|out| reply::error(out, &refusal));
            return;
        }
        if let Some(name) = name {
            self.set_name(name);
        }
        let id = self.id;
        self.ready(|out| about::hello(out, id));
    }

    fn get_name(&mut self) {
        let name = self.name.clone();
        self.ready(|out| match &name {
            Some(n) => reply::bulk(out, n),
            None => reply::nil(out),
        });
    }

    fn multi(&mut self) {
        if self.transaction.is_some() {
            return self.ready(|out| reply::error(out, "ERR MULTI calls can not be nested"));
        }
        self.transaction = Some(Transaction::default());
        self.ready(|out| reply::simple(out, "OK"));
    }

    fn discard(&mut self) {
        match self.transaction.take() {
            Some(_) => self.ready(|out| reply::simple(out, "OK")),
            None => self.ready(|out| reply::error(out, "ERR DISCARD without MULTI")),
        }
    }

    /// Runs the queued commands, answering with an array of their answers, unless one
    /// was refused while queueing: then nothing runs.
    fn exec(&mut self, figures: &dyn Fn() -> ServerFigures) -> Result<(), NodeGone> {
        match self.transaction.take() {
            None => self.ready(|out| reply::error(out, "ERR EXEC without MULTI")),
            Some(t) if t.refused => self.ready(|out| {
                reply::error(
                    out,
                    "EXECABORT Transaction discarded because of previous errors.",
                )
            }),
            Some(t) => {
                self.ready(|out| reply::array(out, t.commands.len()));
                for command in &t.commands {
                    let args = Args::new(&t.bytes, &t.ranges[command.clone()]);
                    self.run(args, figures, false)?;
                }
            }
        }
        Ok(())
    }

    /// Between `MULTI` and `EXEC`: checks the command and keeps a copy, or refuses it
    /// and marks the transaction refused.
    fn queue(&mut self, args: Args<'_>) {
        let Some(t) = &mut self.transaction else {
            return;
        };
        let size: usize = args.iter().map(<[u8]>::len).sum();
        let parsed = command::parse(args).and_then(|c| {
            self.gate.admit(&c)?;
            Ok(c.reply_bound())
        });
        let refusal = match parsed {
            Err(refusal) => Some(refusal),
            Ok(bound)
                if t.commands.len() >= MAX_QUEUED
                    || t.bytes.len() + size > MAX_QUEUED_BYTES
                    || t.reply_bound + bound > MAX_EXEC_REPLY =>
            {
                Some(format!(
                    "ERR transaction too large: at most {MAX_QUEUED} commands, \
                     {MAX_QUEUED_BYTES} bytes of arguments and {MAX_EXEC_REPLY} bytes of replies"
                ))
            }
            Ok(bound) => {
                t.reply_bound += bound;
                None
            }
        };
        if let Some(refusal) = refusal {
            t.refused = true;
            self.ready(|out| reply::error(out, &refusal));
            return;
        }
        let first = t.ranges.len();
        for arg in args.iter() {
            let start = t.bytes.len();
            t.bytes.extend_from_slice(arg);
            t.ranges.push(start..t.bytes.len());
        }
        t.commands.push(first..t.ranges.len());
        self.ready(|out| reply::simple(out, "QUEUED"));
    }

    /// Answers a request that broke the protocol, after everything before it; the
    /// connection then closes.
    pub fn protocol_error(&mut self, message: &str) {
        self.ready(|out| reply::error(out, &format!("ERR {message}")));
        self.closing = true;
    }

    /// Sends the operations gathered so far to the node without waiting for them, so
    /// that a server running many sessions can hand all of theirs over before it waits
    /// for any. Ends the round: nothing more is executed before [`Session::finish`].
    pub fn submit(&mut self) -> Result<(), NodeGone> {
        let sent = self.send_ops();
        // Only the node holds the answer channel now, so `answered` sees it dropped.
        if let Some(flight) = &mut self.ops {
            flight.reply = None;
        }
        sent
    }

    /// Whether [`Session::finish`] can assemble the replies without waiting for an
    /// operation's answer (a read's answer needs no group commit, so it is not waited
    /// for here). Call it after [`Session::submit`].
    pub fn answered(&mut self) -> bool {
        let expected = self.ops_in_flight;
        self.ops.as_mut().is_none_or(|f| f.collect(expected))
    }

    /// Waits for everything in flight and returns every reply, in request order. The
    /// caller writes them, then calls [`Session::written`].
    pub fn finish(&mut self) -> Result<&[u8], NodeGone> {
        self.settle()?;
        Ok(&self.out)
    }

    /// The replies [`Session::finish`] returned have been written.
    pub fn written(&mut self) {
        self.out.clear();
    }

    fn set_name(&mut self, name: &[u8]) {
        self.name = (!name.is_empty()).then(|| name.to_vec());
    }

    /// A reply that needs nothing from the node: straight to `out` when nothing is
    /// waiting before it, else parked behind what is.
    fn ready(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.slots.is_empty() {
            write(&mut self.out);
        } else {
            let start = self.deferred.len();
            write(&mut self.deferred);
            self.slots.push(Slot::Deferred(start..self.deferred.len()));
        }
    }

    fn operation(&mut self, op: LocalOp) -> Result<(), NodeGone> {
        if self.reads.is_some() {
            self.settle()?;
        }
        self.pending_ops.push(op);
        self.ops_in_flight += 1;
        self.slots.push(Slot::Op);
        if self.pending_ops.len() >= MAX_BATCH {
            self.send_ops()?;
        }
        Ok(())
    }

    /// Sends the gathered operations as one request (one batch, one group commit).
    fn send_ops(&mut self) -> Result<(), NodeGone> {
        if self.pending_ops.is_empty() {
            return Ok(());
        }
        let reply = self.ops.get_or_insert_with(Flight::new).reply()?;
        let request = match self.pending_ops.pop() {
            Some(op) if self.pending_ops.is_empty() => ClientOps::One {
                op,
                reply: OpReply::Channel(ChannelReply::new(reply, self.notify.clone())),
            },
            last => {
                self.pending_ops.extend(last);
                ClientOps::Many {
                    ops: std::mem::take(&mut self.pending_ops),
                    reply,
                    notify: self.notify.clone(),
                }
            }
        };
        self.link.ops.send(request).map_err(|_| NodeGone)
    }

    /// Asks for `names` (one query each) after every earlier operation is answered.
    /// At most [`MAX_READS_IN_FLIGHT`] answers wait at once (plus one command's), so a
    /// pipeline of huge `MGET`s cannot pile up answers without bound.
    fn read(&mut self, names: &[String], slot: Slot) -> Result<(), NodeGone> {
        if !self.pending_ops.is_empty()
            || self.ops.is_some()
            || self.reads_in_flight >= MAX_READS_IN_FLIGHT
        {
            self.settle()?;
        }
        let reply = self.reads.get_or_insert_with(Flight::new).reply()?;
        for name in names {
            let query = Query::Counter(name.clone(), reply.clone());
            self.link.queries.send(query).map_err(|_| NodeGone)?;
        }
        self.reads_in_flight += names.len();
        self.slots.push(slot);
        Ok(())
    }

    /// The node's status, after everything before it has been answered.
    fn status(&mut self) -> Result<NodeStatus, NodeGone> {
        self.settle()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.link
            .queries
            .send(Query::Status(reply))
            .map_err(|_| NodeGone)?;
        answer.recv().map_err(|_| NodeGone)
    }

    /// Sends what is gathered, waits for every answer in flight and writes every slot
    /// into `out` in order. Afterwards nothing is in flight or parked.
    fn settle(&mut self) -> Result<(), NodeGone> {
        self.send_ops()?;
        self.reads_in_flight = 0;
        self.ops_in_flight = 0;
        let mut ops = self.ops.take().map(|f| Flight { reply: None, ..f });
        let mut reads = self.reads.take().map(|f| Flight { reply: None, ..f });
        let mut slots = std::mem::take(&mut self.slots);
        let result = slots
            .iter()
            .try_for_each(|slot| self.write_slot(slot, &mut ops, &mut reads));
        slots.clear();
        self.slots = slots;
        self.deferred.clear();
        result
    }

    fn write_slot(
        &mut self,
        slot: &Slot,
        ops: &mut Option<Flight<OpResult>>,
        reads: &mut Option<Flight<CounterView>>,
    ) -> Result<(), NodeGone> {
        let out = &mut self.out;
        match slot {
            Slot::Deferred(range) => out.extend_from_slice(&self.deferred[range.clone()]),
            Slot::Op => match next(ops)? {
                Ok(value) => reply::integer(out, value),
                Err(failure) => reply::error(out, &op_failure(&failure)),
            },
            Slot::Get { integer: true } => reply::integer(out, counter_value(&next(reads)?)),
            Slot::Get { integer: false } => reply::bulk_integer(out, counter_value(&next(reads)?)),
            Slot::Many { n, exists: true } => {
                let mut count = 0;
                for _ in 0..*n {
                    count += i64::from(counter_exists(&next(reads)?));
                }
                reply::integer(out, count);
            }
            Slot::Many { n, exists: false } => {
                reply::array(out, *n);
                for _ in 0..*n {
                    reply::bulk_integer(out, counter_value(&next(reads)?));
                }
            }
        }
        Ok(())
    }
}

/// The error line for an operation the node did not apply.
fn op_failure(failure: &OpFailure) -> String {
    match failure {
        OpFailure::Refused(e @ OpError::Overflow { .. }) => {
            format!("ERR increment or decrement would overflow: {e}")
        }
        OpFailure::Refused(e @ OpError::TooManyCounters { .. }) => format!("OOM {e}"),
        OpFailure::Refused(e) => format!("ERR {e}"),
        OpFailure::Storage(e) => format!("ERR {e}"),
        OpFailure::Unavailable(e) => format!("TRYAGAIN {e}"),
    }
}

fn counter_value(view: &CounterView) -> i64 {
    view.value
}

/// Whether a counter view has any origin's totals: the counter was written at least once.
fn counter_exists(view: &CounterView) -> bool {
    !view.origins.is_empty()
}
