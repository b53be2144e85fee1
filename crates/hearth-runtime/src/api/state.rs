//! The per-sandbox state machine of the Runtime API, free of HTTP: the
//! handlers in `http.rs` parse a request, call one method here under the
//! lock, and render what it decides.

use super::{AssignError, Invocation, InvokeOutcome};
use bytes::Bytes;
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// Why the Runtime API refused a request. Rendered (status, `errorType`)
/// in exactly one place: `http::render_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ApiError {
    /// An answer names a request id other than the one in flight.
    #[error("Invalid request ID")]
    InvalidRequestId,
    /// The request is not allowed in the runtime's current state.
    #[error("State transition failed for runtime: {0}")]
    InvalidStateTransition(String),
    /// A posted body is over the 6 MB limit.
    #[error(
        "Exceeded maximum allowed payload size ({} bytes).",
        super::RESPONSE_MAX_BYTES
    )]
    RequestEntityTooLarge,
    /// The request body ended early or could not be read.
    #[error("The request body could not be read: {0}")]
    TruncatedHttpRequest(String),
    /// No such Runtime API path.
    #[error("Unknown Runtime API path: {0}")]
    NotFound(String),
    /// A known path with the wrong method.
    #[error("Method {method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    /// The endpoint is shutting down.
    #[error("The Runtime API is shutting down")]
    ShuttingDown,
}

/// What to do with a `next` request.
#[derive(Debug)]
pub(super) enum NextDecision {
    /// Return this event now.
    Deliver(Invocation),
    /// Wait for an event. The sender is dropped, without an event, when a
    /// newer `next` supersedes this one or the endpoint shuts down.
    Park(oneshot::Receiver<Invocation>),
    /// Refuse the request.
    Refuse(ApiError),
}

/// What to do with a `GET …/hearth/assignment` request.
#[derive(Debug)]
pub(super) enum AssignmentDecision {
    /// Return this assignment (its JSON) now.
    Deliver(Bytes),
    /// Wait for [`Machine::assign`]. The sender is dropped, without an
    /// assignment, when a newer poll supersedes this one or the endpoint
    /// shuts down.
    Park(oneshot::Receiver<Bytes>),
    /// Refuse the request.
    Refuse(ApiError),
}

#[derive(Debug)]
struct Queued {
    inv: Invocation,
    done: oneshot::Sender<InvokeOutcome>,
}

#[derive(Debug)]
struct InFlight {
    request_id: String,
    done: oneshot::Sender<InvokeOutcome>,
}

/// See the table in the `api` module docs.
#[derive(Debug, Default)]
pub(super) struct Machine {
    closed: bool,
    /// The runtime has asked for its assignment at least once.
    asked_for_assignment: bool,
    /// The assignment (its JSON), once [`Machine::assign`] gave one.
    assignment: Option<Bytes>,
    /// The assignment was handed to a poll: `next` and `init/error` are
    /// allowed from now on.
    assignment_delivered: bool,
    /// The runtime's outstanding assignment poll, if it is waiting.
    assignment_poll: Option<oneshot::Sender<Bytes>>,
    /// The runtime has called `next` at least once (init is over).
    saw_next: bool,
    init_error_posted: bool,
    /// The runtime's outstanding `next`, if it is waiting.
    parked: Option<oneshot::Sender<Invocation>>,
    /// Invocations submitted and not yet given to the runtime, oldest first.
    queue: VecDeque<Queued>,
    /// The invocation the runtime has and has not answered.
    in_flight: Option<InFlight>,
}

impl Machine {
    /// A `GET …/invocation/next`. The returned flag is true for the
    /// runtime's first `next` (the end of its init).
    pub(super) fn next(&mut self) -> (NextDecision, bool) {
        if self.closed {
            return (NextDecision::Refuse(ApiError::ShuttingDown), false);
        }
        if let Err(e) = self.assignment_gate() {
            return (NextDecision::Refuse(e), false);
        }
        if let Some(f) = &self.in_flight {
            return (
                NextDecision::Refuse(ApiError::InvalidStateTransition(format!(
                    "invocation {} is in progress; post its response or error before asking for the next invocation",
                    f.request_id
                ))),
                false,
            );
        }
        let first = !self.saw_next;
        self.saw_next = true;
        if let Some(q) = self.queue.pop_front() {
            self.parked = None;
            self.in_flight = Some(InFlight {
                request_id: q.inv.request_id.clone(),
                done: q.done,
            });
            return (NextDecision::Deliver(q.inv), first);
        }
        // Dropping an older poll's sender wakes it as superseded: a runtime
        // has one poll outstanding, so the older one is a dead or retried
        // connection and the newer one is the one to answer.
        self.parked = None;
        let (tx, rx) = oneshot::channel();
        self.parked = Some(tx);
        (NextDecision::Park(rx), first)
    }

    /// Submits an invocation: straight to the parked `next` if there is one,
    /// else to the queue. False if the endpoint is closed.
    pub(super) fn submit(&mut self, inv: Invocation, done: oneshot::Sender<InvokeOutcome>) -> bool {
        if self.closed {
            return false;
        }
        let mut inv = inv;
        if self.in_flight.is_none() && self.queue.is_empty() {
            if let Some(parked) = self.parked.take() {
                let request_id = inv.request_id.clone();
                match parked.send(inv) {
                    Ok(()) => {
                        self.in_flight = Some(InFlight { request_id, done });
                        return true;
                    }
                    // The poll's connection is gone: keep the event for the
                    // runtime's next poll.
                    Err(back) => inv = back,
                }
            }
        }
        self.queue.push_back(Queued { inv, done });
        true
    }

    /// A `/response` or `/error` for `request_id`: the invoker's channel if
    /// the answer is allowed (the invocation is then no longer in flight).
    pub(super) fn answer(
        &mut self,
        request_id: &str,
    ) -> Result<oneshot::Sender<InvokeOutcome>, ApiError> {
        if self.closed {
            return Err(ApiError::ShuttingDown);
        }
        match self.in_flight.take() {
            None => Err(ApiError::InvalidStateTransition(
                "no invocation is in progress: the runtime answers only an invocation it got from /runtime/invocation/next, and only once"
                    .to_owned(),
            )),
            Some(f) if f.request_id != request_id => {
                self.in_flight = Some(f);
                Err(ApiError::InvalidRequestId)
            }
            Some(f) => Ok(f.done),
        }
    }

    /// A `POST …/init/error`: allowed once, before the first `next`.
    pub(super) fn init_error(&mut self) -> Result<(), ApiError> {
        if self.closed {
            return Err(ApiError::ShuttingDown);
        }
        self.assignment_gate()?;
        if self.saw_next || self.init_error_posted {
            return Err(ApiError::InvalidStateTransition(
                "init/error is accepted once, before the first /runtime/invocation/next".to_owned(),
            ));
        }
        self.init_error_posted = true;
        Ok(())
    }

    /// Whether the runtime has asked for its assignment (at least once).
    /// Read right after the first `next` or an accepted `init/error`: if it
    /// has not, it started without one and never will be runtime-warm.
    pub(super) fn asked_for_assignment(&self) -> bool {
        self.asked_for_assignment
    }

    /// Whether init has begun: a `next` or an `init/error` was accepted.
    fn init_started(&self) -> bool {
        self.saw_next || self.init_error_posted
    }

    /// `next` and `init/error` wait for the assignment once the runtime has
    /// asked for one (it is a runtime-warm bootstrap) or the daemon has
    /// given one (the runtime must collect it before it may start).
    fn assignment_gate(&self) -> Result<(), ApiError> {
        if (self.asked_for_assignment || self.assignment.is_some()) && !self.assignment_delivered {
            return Err(ApiError::InvalidStateTransition(
                "the runtime is awaiting its assignment: it may start its init only after GET /2018-06-01/runtime/hearth/assignment has answered"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// A `GET …/hearth/assignment`. The returned flag is true for the
    /// runtime's first poll (it has reached the runtime-warm state).
    pub(super) fn assignment_poll(&mut self) -> (AssignmentDecision, bool) {
        if self.closed {
            return (AssignmentDecision::Refuse(ApiError::ShuttingDown), false);
        }
        if self.init_started() {
            return (
                AssignmentDecision::Refuse(ApiError::InvalidStateTransition(
                    "the runtime has started its init: an assignment is available only before the first /runtime/invocation/next or /runtime/init/error"
                        .to_owned(),
                )),
                false,
            );
        }
        let first = !self.asked_for_assignment;
        self.asked_for_assignment = true;
        // A newer poll supersedes an older one, as for `next`.
        self.assignment_poll = None;
        if let Some(a) = &self.assignment {
            // Repeated polls (a retried connection) get the same assignment.
            self.assignment_delivered = true;
            return (AssignmentDecision::Deliver(a.clone()), first);
        }
        let (tx, rx) = oneshot::channel();
        self.assignment_poll = Some(tx);
        (AssignmentDecision::Park(rx), first)
    }

    /// The daemon assigns the sandbox: `assignment` (JSON) goes to the
    /// parked poll, or waits for the poll that comes.
    pub(super) fn assign(&mut self, assignment: Bytes) -> Result<(), AssignError> {
        if self.closed {
            return Err(AssignError::Closed);
        }
        if self.assignment.is_some() {
            return Err(AssignError::AlreadyAssigned);
        }
        if self.init_started() {
            return Err(AssignError::InitStarted);
        }
        if let Some(poll) = self.assignment_poll.take() {
            // If the poll's connection is gone the assignment stays stored
            // for the runtime's next poll.
            self.assignment_delivered = poll.send(assignment.clone()).is_ok();
        }
        self.assignment = Some(assignment);
        Ok(())
    }

    /// The runtime waits on the assignment endpoint and has none yet.
    pub(super) fn is_awaiting_assignment(&self) -> bool {
        self.assignment.is_none()
            && self
                .assignment_poll
                .as_ref()
                .is_some_and(|p| !p.is_closed())
    }

    /// Forgets `request_id` (its invoker gave up). True if it was pending.
    pub(super) fn abandon(&mut self, request_id: &str) -> bool {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.request_id == request_id)
        {
            self.in_flight = None;
            return true;
        }
        let before = self.queue.len();
        self.queue.retain(|q| q.inv.request_id != request_id);
        self.queue.len() != before
    }

    /// The runtime waits in `next` and owes nothing.
    pub(super) fn is_idle(&self) -> bool {
        self.parked.as_ref().is_some_and(|p| !p.is_closed())
            && self.queue.is_empty()
            && self.in_flight.is_none()
    }

    /// Whether the endpoint is shut down.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Shuts down: every waiter's channel is dropped.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.assignment_poll = None;
        self.parked = None;
        self.queue.clear();
        self.in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(id: &str) -> Invocation {
        Invocation::new(id, Bytes::from_static(b"{}"), 1, "arn")
    }

    #[test]
    fn queued_invocation_is_delivered_to_the_next_poll() {
        let mut m = Machine::default();
        let (tx, mut rx) = oneshot::channel();
        assert!(m.submit(inv("a"), tx));
        let (d, first) = m.next();
        assert!(first);
        assert!(matches!(d, NextDecision::Deliver(i) if i.request_id == "a"));
        assert_eq!(m.answer("b").unwrap_err(), ApiError::InvalidRequestId);
        let done = m.answer("a").unwrap();
        done.send(InvokeOutcome::Response(Bytes::new())).unwrap();
        assert!(rx.try_recv().is_ok());
        assert!(matches!(
            m.answer("a"),
            Err(ApiError::InvalidStateTransition(_))
        ));
    }

    #[test]
    fn parked_poll_gets_the_submission_and_a_newer_poll_supersedes() {
        let mut m = Machine::default();
        let (d1, first) = m.next();
        assert!(first);
        let NextDecision::Park(mut rx1) = d1 else {
            panic!()
        };
        let (d2, first) = m.next();
        assert!(!first);
        let NextDecision::Park(mut rx2) = d2 else {
            panic!()
        };
        assert!(matches!(
            rx1.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        let (tx, _rx) = oneshot::channel();
        assert!(m.submit(inv("a"), tx));
        assert!(matches!(rx2.try_recv(), Ok(i) if i.request_id == "a"));
        assert!(matches!(
            m.next().0,
            NextDecision::Refuse(ApiError::InvalidStateTransition(_))
        ));
    }

    #[test]
    fn a_dead_poll_does_not_swallow_an_invocation() {
        let mut m = Machine::default();
        let NextDecision::Park(rx) = m.next().0 else {
            panic!()
        };
        drop(rx);
        let (tx, _rx) = oneshot::channel();
        assert!(m.submit(inv("a"), tx));
        assert!(matches!(m.next().0, NextDecision::Deliver(i) if i.request_id == "a"));
    }

    #[test]
    fn abandoned_invocations_are_forgotten() {
        let mut m = Machine::default();
        let (tx, _rx) = oneshot::channel();
        m.submit(inv("a"), tx);
        assert!(m.abandon("a"));
        let NextDecision::Park(_rx) = m.next().0 else {
            panic!()
        };
        assert!(m.is_idle());
        let (tx, _rx2) = oneshot::channel();
        m.submit(inv("b"), tx);
        assert!(m.abandon("b"));
        assert!(matches!(
            m.answer("b"),
            Err(ApiError::InvalidStateTransition(_))
        ));
        assert!(!m.abandon("b"));
    }

    #[test]
    fn init_error_only_before_the_first_next() {
        let mut m = Machine::default();
        assert!(m.init_error().is_ok());
        assert!(m.init_error().is_err());
        let mut m = Machine::default();
        let _ = m.next();
        assert!(m.init_error().is_err());
    }

    #[test]
    fn assignment_goes_to_the_parked_poll_and_gates_init() {
        let mut m = Machine::default();
        let (d, first) = m.assignment_poll();
        assert!(first);
        let AssignmentDecision::Park(mut rx) = d else {
            panic!()
        };
        assert!(m.is_awaiting_assignment());
        assert!(matches!(
            m.next().0,
            NextDecision::Refuse(ApiError::InvalidStateTransition(_))
        ));
        assert!(m.init_error().is_err());
        assert_eq!(m.assign(Bytes::from_static(b"A")), Ok(()));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"A"));
        assert!(!m.is_awaiting_assignment());
        assert_eq!(
            m.assign(Bytes::from_static(b"B")),
            Err(AssignError::AlreadyAssigned)
        );
        // A repeat poll gets the same assignment until init starts.
        assert!(matches!(m.assignment_poll(), (AssignmentDecision::Deliver(a), false) if a == "A"));
        let (d, first) = m.next();
        assert!(first && matches!(d, NextDecision::Park(_)));
        assert!(m.asked_for_assignment());
        assert!(matches!(
            m.assignment_poll().0,
            AssignmentDecision::Refuse(ApiError::InvalidStateTransition(_))
        ));
    }

    #[test]
    fn an_early_assignment_is_stored_and_a_dead_poll_does_not_swallow_it() {
        let mut m = Machine::default();
        let AssignmentDecision::Park(rx) = m.assignment_poll().0 else {
            panic!()
        };
        drop(rx);
        assert!(!m.is_awaiting_assignment());
        assert_eq!(m.assign(Bytes::from_static(b"A")), Ok(()));
        assert!(m.init_error().is_err(), "not delivered yet");
        assert!(matches!(m.assignment_poll(), (AssignmentDecision::Deliver(a), false) if a == "A"));
        assert!(m.init_error().is_ok());

        let mut m = Machine::default();
        assert_eq!(m.assign(Bytes::from_static(b"A")), Ok(()));
        assert!(matches!(
            m.next().0,
            NextDecision::Refuse(ApiError::InvalidStateTransition(_))
        ));
        assert!(matches!(
            m.assignment_poll(),
            (AssignmentDecision::Deliver(_), true)
        ));
        assert!(matches!(m.next(), (NextDecision::Park(_), true)));
    }

    #[test]
    fn a_runtime_that_starts_without_asking_cannot_be_assigned() {
        let mut m = Machine::default();
        assert!(matches!(m.next(), (NextDecision::Park(_), true)));
        assert!(!m.asked_for_assignment());
        assert_eq!(
            m.assign(Bytes::from_static(b"A")),
            Err(AssignError::InitStarted)
        );
        assert!(matches!(
            m.assignment_poll().0,
            AssignmentDecision::Refuse(ApiError::InvalidStateTransition(_))
        ));
    }

    #[test]
    fn close_refuses_everything() {
        let mut m = Machine::default();
        m.close();
        assert_eq!(m.assign(Bytes::new()), Err(AssignError::Closed));
        assert!(matches!(
            m.assignment_poll().0,
            AssignmentDecision::Refuse(ApiError::ShuttingDown)
        ));
        let (tx, _rx) = oneshot::channel();
        assert!(!m.submit(inv("a"), tx));
        assert!(matches!(
            m.next().0,
            NextDecision::Refuse(ApiError::ShuttingDown)
        ));
        assert_eq!(m.init_error(), Err(ApiError::ShuttingDown));
    }
}
