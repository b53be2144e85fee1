//! The threads that enter guests: each behind the vCPU seccomp filter, each
//! with its own deadline timer. A job (boot a pooled VM, specialise one, run
//! an invocation, reset) goes to an idle thread, or to a new one up to the
//! limit, or waits for one. VMs move between threads freely: a VM belongs to
//! whichever job holds it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use hearth_vmm::guest::Runner;
use hearth_vmm::runner::VmThread;

use super::VmPoolError;

type Job = Box<dyn FnOnce(&Runner) + Send>;

#[derive(Debug, Default)]
struct State {
    threads: Vec<Arc<VmThread>>,
    idle: Vec<usize>,
    waiting: VecDeque<JobBox>,
}

struct JobBox(Job);

impl std::fmt::Debug for JobBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// The pool of VM threads.
#[derive(Debug, Clone)]
pub struct Workers {
    state: Arc<Mutex<State>>,
    max: usize,
}

impl Workers {
    /// Up to `max` threads, started on demand.
    pub fn new(max: usize) -> Workers {
        Workers {
            state: Arc::default(),
            max: max.max(1),
        }
    }

    /// Threads started so far.
    pub fn threads(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .threads
            .len()
    }

    /// Runs `job` on a VM thread; returns at once (the job reports its own
    /// result, e.g. through a channel it captured).
    pub fn submit(&self, job: impl FnOnce(&Runner) + Send + 'static) -> Result<(), VmPoolError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match st.idle.pop() {
            Some(i) => i,
            None if st.threads.len() < self.max => {
                let n = st.threads.len();
                let t = VmThread::spawn(&format!("hearth-vm-{n}"), true)
                    .map_err(|e| VmPoolError::Worker(e.to_string()))?;
                st.threads.push(Arc::new(t));
                n
            }
            None => {
                st.waiting.push_back(JobBox(Box::new(job)));
                return Ok(());
            }
        };
        let thread = st.threads[index].clone();
        drop(st);
        self.run_on(index, thread, Box::new(job))
    }

    /// Runs `job` on thread `index`, then the jobs that waited, then marks
    /// the thread idle.
    fn run_on(&self, index: usize, thread: Arc<VmThread>, job: Job) -> Result<(), VmPoolError> {
        let state = self.state.clone();
        let again = self.clone();
        let me = thread.clone();
        thread
            .submit(move |runner| {
                job(runner);
                let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                match st.waiting.pop_front() {
                    Some(next) => {
                        drop(st);
                        // Queued behind this job on the same thread.
                        let _ = again.run_on(index, me, next.0);
                    }
                    None => st.idle.push(index),
                }
            })
            .map_err(|e| VmPoolError::Worker(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_on_bounded_threads_and_all_finish() {
        let w = Workers::new(2);
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            w.submit(move |_| {
                // Spin (a VM thread may not sleep: nanosleep is not in its
                // seccomp filter).
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(5) {
                    std::hint::spin_loop();
                }
                let _ = tx.send(i);
            })
            .unwrap();
        }
        let mut got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(w.threads() <= 2);
    }
}
