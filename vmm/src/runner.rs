//! A thread that runs VMs behind the vCPU seccomp filter.
//!
//! VMs are created (and snapshots written) where files may be opened; the
//! steps that enter the guest (`boot`, `load`, `invoke`, `reset`) are sent
//! here as jobs. The thread's loop is an event-manager `EventManager`
//! waiting on an `EventFd`: a job is queued, the eventfd is written, the
//! thread wakes, runs it with its own [`Runner`] (whose deadline timer
//! signals this thread), and sends the result back.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::guest::Runner;
use crate::seccomp;

/// Why a VM thread could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Starting the thread or its event loop failed.
    #[error("starting the VM thread: {0}")]
    Start(String),
    /// The thread is gone (a job panicked).
    #[error("the VM thread stopped")]
    Gone,
}

type Job = Box<dyn FnOnce(&Runner) + Send>;

enum Message {
    Run(Job),
    Stop,
}

type Queue = Arc<Mutex<VecDeque<Message>>>;

/// The thread's event subscriber: drains the job queue when woken.
struct JobQueue {
    wake: EventFd,
    queue: Queue,
    runner: Runner,
    stop: bool,
}

impl MutEventSubscriber for JobQueue {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            log::error!("VM thread: cannot watch its eventfd: {e:?}");
            self.stop = true;
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.wake.read();
        loop {
            let next = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => Some(Message::Stop),
            };
            match next {
                Some(Message::Run(job)) => job(&self.runner),
                Some(Message::Stop) => {
                    self.stop = true;
                    return;
                }
                None => return,
            }
        }
    }
}

/// A thread dedicated to running VMs.
#[derive(Debug)]
pub struct VmThread {
    queue: Queue,
    wake: EventFd,
    join: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Run(_) => "Run",
            Message::Stop => "Stop",
        })
    }
}

impl VmThread {
    /// Starts the thread; with `filtered`, it installs the vCPU seccomp
    /// filter before it runs anything.
    pub fn spawn(name: &str, filtered: bool) -> Result<VmThread, RunnerError> {
        let start = |e: &dyn std::fmt::Display| RunnerError::Start(e.to_string());
        let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| start(&e))?;
        let queue: Queue = Arc::default();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let (thread_wake, thread_queue) = (wake.try_clone().map_err(|e| start(&e))?, queue.clone());
        let join = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let setup = (|| -> Result<_, String> {
                    let runner = Runner::for_this_thread().map_err(|e| e.to_string())?;
                    let mut em = EventManager::<JobQueue>::new().map_err(|e| format!("{e:?}"))?;
                    let id = em.add_subscriber(JobQueue {
                        wake: thread_wake,
                        queue: thread_queue,
                        runner,
                        stop: false,
                    });
                    if filtered {
                        // Opened now: the filter forbids opening files.
                        crate::vm::pagemap().map_err(|e| e.to_string())?;
                        seccomp::apply_to_this_thread().map_err(|e| e.to_string())?;
                    }
                    Ok((em, id))
                })();
                let (mut em, id) = match setup {
                    Ok(em) => {
                        let _ = ready_tx.send(Ok(()));
                        em
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    if let Err(e) = em.run() {
                        log::error!("VM thread event loop: {e:?}");
                        return;
                    }
                    let stopping = em.subscriber_mut(id).map(|s| s.stop);
                    if stopping.unwrap_or(true) {
                        return;
                    }
                }
            })
            .map_err(|e| start(&e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(VmThread {
                queue,
                wake,
                join: Some(join),
            }),
            Ok(Err(e)) => Err(RunnerError::Start(e)),
            Err(_) => Err(RunnerError::Gone),
        }
    }

    /// Queues `f` to run on the thread and returns at once; `f` reports its
    /// own result (through a channel it captured). Jobs run in order.
    pub fn submit(&self, f: impl FnOnce(&Runner) + Send + 'static) -> Result<(), RunnerError> {
        self.queue
            .lock()
            .map_err(|_| RunnerError::Gone)?
            .push_back(Message::Run(Box::new(f)));
        self.wake.write(1).map_err(|_| RunnerError::Gone)?;
        Ok(())
    }

    /// Runs `f` on the thread and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Runner) -> R + Send + 'static,
    ) -> Result<R, RunnerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queue
            .lock()
            .map_err(|_| RunnerError::Gone)?
            .push_back(Message::Run(Box::new(move |r| {
                let _ = tx.send(f(r));
            })));
        self.wake.write(1).map_err(|_| RunnerError::Gone)?;
        rx.recv().map_err(|_| RunnerError::Gone)
    }
}

impl Drop for VmThread {
    fn drop(&mut self) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(Message::Stop);
        }
        let _ = self.wake.write(1);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
