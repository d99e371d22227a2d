//! Runs analyses off the request threads (on the engine's job threads, their parallel work on a
//! dedicated rayon pool: see [`Jobs`] for why apart), one run at a time per (task,
//! selection) shared by every request that asks for it meanwhile, results cached until the graph
//! changes. A request for a result whose graph has changed since gets the cached one marked
//! `stale` while the fresh one computes, when computing it takes long (over [`STALE_AFTER_MS`]);
//! otherwise it waits for the fresh one.
//!
//! Under live ingest the graph changes every few milliseconds, so two bounds keep analysis from
//! eating the machine: a big snapshot (over [`REUSE_MIN_EDGES`] edges: a size, not a time, so that
//! small graphs behave the same on a loaded machine) stays fresh enough for [`REUSE_FACTOR`] times
//! as long as it took to take (its results are served, marked stale, without a
//! new run, and runs starting meanwhile share it), so snapshots cost at most a tenth of the pool;
//! and results hold at most [`HELD_NETWORKS`] distinct snapshots between them (results on older
//! ones are dropped).

use super::community::{self, Communities, Method};
use super::network::{Network, Scratch};
use super::pagerank::{self, PageRank};
use super::paths;
use super::structure::{self, Partition};
use crate::graph::Selection;
use crate::store::SharedGraph;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// A result older than the graph is served as stale, rather than waited for, when it took this long.
pub(crate) const STALE_AFTER_MS: u64 = 500;

/// Snapshots with at least this many edges are reused for a while after the graph changes.
pub(crate) const REUSE_MIN_EDGES: usize = 500_000;
/// ... for this many times as long as they took.
pub(crate) const REUSE_FACTOR: u32 = 10;
/// Distinct snapshots kept alive by the cache and the results together (each is 13 bytes an edge,
/// plus 24 an edge for its undirected view once built).
pub(crate) const HELD_NETWORKS: usize = 3;
/// Results kept (beyond these, the least recently computed go).
const KEPT_RESULTS: usize = 64;
/// Derived values kept (sorted orders, members by rank), each only while its snapshot lives.
const KEPT_DERIVED: usize = 32;

/// How long the engine keeps a snapshot's buffers ([`Scratch`]) with no job to do: a dashboard
/// asking every few seconds keeps them, a service nobody asks holds 24 bytes an edge less.
const SCRATCH_KEPT: std::time::Duration =
    std::time::Duration::from_millis(if cfg!(test) { 300 } else { 60_000 });

/// What a derived value is derived from: a task's result on a selection, and what of it.
pub(crate) type DerivedKey = (Task, Selection, &'static str);
type DerivedValue = Arc<dyn std::any::Any + Send + Sync>;

/// What to compute. Floating parameters are kept as their bits so tasks can be compared and hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Only the snapshot (for strongest paths along direction, drawings).
    Network,
    /// The snapshot with its undirected view built (for ego networks, strongest paths).
    Undirected,
    PageRank {
        damping_bits: u64,
    },
    Cores,
    Components {
        strong: bool,
    },
    Communities {
        method: Method,
        resolution_bits: u64,
        seed: u64,
    },
    Betweenness {
        samples: Option<usize>,
        seed: u64,
    },
}

impl Task {
    /// Whether the task reads the network's undirected view (built by the job, before the task's
    /// work goes to the pool: see [`Jobs`]).
    fn needs_undirected(self) -> bool {
        matches!(self, Task::Undirected | Task::Cores | Task::Communities { .. } | Task::Betweenness { .. })
    }

    pub fn pagerank(damping: f64) -> Task {
        Task::PageRank { damping_bits: damping.to_bits() }
    }
    pub fn communities(method: Method, resolution: f64, seed: u64) -> Task {
        Task::Communities { method, resolution_bits: resolution.to_bits(), seed }
    }
}

/// The PageRank tolerance: NetworkX's criterion (L1 change below users × tol), tight enough that
/// scores agree with `networkx.pagerank(tol=1e-10)` to 1e-7.
pub(crate) const PAGERANK_TOL: f64 = 1e-10;

pub enum Output {
    Network,
    PageRank(PageRank),
    Cores(Vec<u32>),
    Components(Partition),
    Communities(Communities),
    Betweenness { scores: Vec<f64>, samples: usize, error_bound: f64 },
}

/// Computes a task on a snapshot (on the calling thread; parallel parts use the current rayon pool).
pub(crate) fn compute(task: Task, net: &Network) -> Output {
    match task {
        Task::Network | Task::Undirected => Output::Network,
        Task::PageRank { damping_bits } => {
            Output::PageRank(pagerank::pagerank(net, f64::from_bits(damping_bits), PAGERANK_TOL, 1000))
        }
        Task::Cores => Output::Cores(structure::core_numbers(net.undirected())),
        Task::Components { strong: false } => Output::Components(structure::weak_components(net)),
        Task::Components { strong: true } => Output::Components(structure::strong_components(net)),
        Task::Communities { method, resolution_bits, seed } => Output::Communities(community::communities(
            net.undirected(),
            method,
            f64::from_bits(resolution_bits),
            seed,
        )),
        Task::Betweenness { samples, seed } => {
            let g = net.undirected();
            let k = samples.unwrap_or_else(|| paths::default_samples(g)).clamp(1, g.users().max(1));
            let scores = paths::betweenness(g, k, seed);
            Output::Betweenness {
                scores,
                samples: k.min(g.users()),
                error_bound: paths::error_bound(g.users(), k, 0.05),
            }
        }
    }
}

/// A result with what it was computed on.
#[derive(Clone)]
pub struct Answer {
    pub output: Arc<Output>,
    pub network: Arc<Network>,
    /// Unix seconds.
    pub computed_at: i64,
    pub took_ms: u64,
    /// True when the graph has changed since the snapshot (a fresh result is being computed, or
    /// the snapshot is still reused: see the module's notes).
    pub stale: bool,
}

#[derive(Clone)]
struct Done {
    output: Arc<Output>,
    network: Arc<Network>,
    computed_at: i64,
    took_ms: u64,
    order: u64,
}

type Running = watch::Receiver<Option<Result<Done, String>>>;

#[derive(Default)]
struct Slot {
    done: Option<Done>,
    running: Option<Running>,
}

/// Expensive reads waiting or running at most; past it they are refused (503) rather than queued.
pub(crate) const MAX_QUEUED_READS: usize = 256;

/// After an expensive read that took `t`, its thread rests `READ_REST · t` (at most a second)
/// before the next: clients hammering heavy reads get at most a quarter of each read thread, and
/// the graph's read lock is free three quarters of the time for the writer (PostgreSQL paces its
/// vacuum the same way). A lone read is answered as fast as ever: the rest comes after.
const READ_REST: u32 = 3;

/// [`READ_REST`] while the store is taking writes: writes go first, so a flood of expensive reads
/// holds the graph's read lock (which the writer's every commit waits for) a tenth of the time at
/// most. Measured at 22M edges: eight clients hammering a far find_path (a search of up to 4M
/// entries under one read lock) cost the writes 72% of their rate resting 3 `t`.
const READ_REST_WRITING: u32 = 9;

/// The analytics engine shared by the HTTP handlers.
pub struct Engine {
    graph: SharedGraph,
    /// The analyses' parallel work, and nothing that waits: see [`Jobs`].
    pool: Arc<rayon::ThreadPool>,
    jobs: Jobs,
    /// Expensive reads of the live graph (a hub's edges, users by degree, the subgraph to draw,
    /// paths): as many threads as the analyses, at normal priority, with a bounded queue.
    reads: rayon::ThreadPool,
    queued_reads: std::sync::atomic::AtomicUsize,
    slots: Mutex<HashMap<(Task, Selection), Slot>>,
    networks: Mutex<Vec<(Selection, Arc<Network>)>>,
    /// Snapshots are taken one at a time: two tasks on one selection share the copy.
    snapshotting: Mutex<()>,
    /// The buffers of the last snapshot's build, for the next (24 bytes an edge); let go once the
    /// job threads have waited [`SCRATCH_KEPT`] for work.
    scratch: Arc<Mutex<Scratch>>,
    derived: Mutex<Vec<(DerivedKey, std::sync::Weak<Network>, DerivedValue)>>,
    runs: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// An engine with a pool of `threads` threads.
    ///
    /// # Errors
    /// If the threads cannot be started.
    pub fn new(graph: SharedGraph, threads: usize) -> std::io::Result<Arc<Engine>> {
        // Analyses at the lowest priority ([`lowest_priority`]): when cores are short, the store's
        // writer, the sources and the requests go first, so ingest keeps its rate while analyses
        // run; idle cores still go to them. Not the reads: they hold the graph's read lock while
        // they run, and a reader the scheduler keeps waiting would keep the writer waiting too
        // (priority inversion, measured: writes fell to a quarter of their rate under hammered
        // paths); they are bounded by their pool's size instead.
        let pool = |name: &'static str, lowest: bool| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(move |i| format!("tagflow-{name}-{i}"))
                .start_handler(move |_| {
                    if !lowest {
                        return;
                    }
                    if let Err(e) = lowest_priority() {
                        log::debug!("analytics: could not lower the thread's priority: {e:?}");
                    }
                })
                .build()
                .map_err(std::io::Error::other)
        };
        let scratch = Arc::new(Mutex::new(Scratch::default()));
        Ok(Arc::new(Engine {
            graph,
            pool: Arc::new(pool("analytics", true)?),
            jobs: Jobs::start(threads.max(1), scratch.clone())?,
            reads: pool("reads", false)?,
            queued_reads: Default::default(),
            slots: Mutex::new(HashMap::new()),
            networks: Mutex::new(Vec::new()),
            snapshotting: Mutex::new(()),
            scratch,
            derived: Mutex::new(Vec::new()),
            runs: Default::default(),
        }))
    }

    /// The graph analysed.
    pub fn graph(&self) -> &SharedGraph {
        &self.graph
    }

    /// A value derived from results on one snapshot (users sorted by a column, communities' members
    /// by rank): computed once per snapshot, off the async threads, and kept while the snapshot is
    /// (so that a cached answer is served in O(page), not O(users)).
    ///
    /// # Errors
    /// The computation panicked (a bug).
    pub(crate) async fn derived<T, F>(
        &self,
        key: DerivedKey,
        net: &Arc<Network>,
        compute: F,
    ) -> Result<Arc<T>, String>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let found = self
            .derived
            .lock()
            .iter()
            .find(|(k, n, _)| *k == key && n.strong_count() > 0 && std::ptr::eq(n.as_ptr(), Arc::as_ptr(net)))
            .map(|(_, _, v)| v.clone());
        if let Some(v) = found.and_then(|v| v.downcast::<T>().ok()) {
            return Ok(v);
        }
        let v = Arc::new(tokio::task::spawn_blocking(compute).await.map_err(|e| e.to_string())?);
        let mut all = self.derived.lock();
        all.retain(|(k, n, _)| n.strong_count() > 0 && *k != key);
        all.push((key, Arc::downgrade(net), v.clone()));
        if all.len() > KEPT_DERIVED {
            all.remove(0);
        }
        Ok(v)
    }

    /// Runs `read` on the live graph, on the pool of expensive reads: at most as many at a time as
    /// the pool has threads, paced (see [`READ_REST`]), so that clients hammering a heavy read take
    /// a share of those threads and not every core the writer and `/status` need. `read` takes the
    /// graph's read lock itself, as briefly and as often as its work allows.
    ///
    /// # Errors
    /// `None` when [`MAX_QUEUED_READS`] are already waiting (the caller answers 503), `Some` when
    /// the read panicked (a bug).
    /// `writing`: whether the store is taking writes (the read's thread then rests
    /// [`READ_REST_WRITING`] times as long as it took).
    pub async fn read<T, F>(&self, writing: bool, read: F) -> Result<T, Option<String>>
    where
        T: Send + 'static,
        F: FnOnce(&SharedGraph) -> T + Send + 'static,
    {
        use std::sync::atomic::Ordering::Relaxed;
        struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        let queued = Queued(&self.queued_reads);
        if self.queued_reads.fetch_add(1, Relaxed) >= MAX_QUEUED_READS {
            return Err(None);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let graph = self.graph.clone();
        self.reads.spawn(move || {
            let started = std::time::Instant::now();
            let out = read(&graph);
            let took = started.elapsed();
            // The request may have gone (client disconnected): nothing to answer.
            let _ = tx.send(out);
            let rest = if writing { READ_REST_WRITING } else { READ_REST };
            std::thread::sleep((took * rest).min(std::time::Duration::from_secs(1)));
        });
        let out = rx.await.map_err(|_| Some("an expensive read panicked".to_string()));
        drop(queued);
        out
    }

    /// Runs heavy work that is not an analysis (an export's preparation) on the analytics pool, at
    /// its priority, so that it takes idle cores and never the writer's.
    ///
    /// # Errors
    /// The work panicked (a bug): its message, for the log.
    pub(crate) async fn offload<T, F>(&self, work: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pool = self.pool.clone();
        self.jobs.run(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(work)))
                .map_err(|p| panic_message(&p));
            let _ = tx.send(out);
        });
        rx.await.map_err(|_| "the analytics pool stopped".to_string())?
    }

    /// How many computations have run (tests check that identical requests share one).
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The snapshot of a selection at the graph's current version, taken if not cached. Holds the
    /// graph's read lock only while copying.
    fn network(&self, sel: &Selection) -> Arc<Network> {
        debug_assert!(rayon::current_thread_index().is_none(), "waits for a lock: never on a pool's thread");
        let _one = self.snapshotting.lock();
        let version = self.graph.read().version();
        if let Some((_, n)) = self.networks.lock().iter().find(|(s, n)| s == sel && usable(n, version)) {
            return n.clone();
        }
        let (net, _) = snapshot(&self.graph, sel, Some(&self.pool), &mut self.scratch.lock());
        let net = Arc::new(net);
        let mut nets = self.networks.lock();
        nets.retain(|(s, _)| s != sel);
        nets.push((*sel, net.clone()));
        net
    }

    /// A task's result for a selection: cached if the graph has not changed, otherwise computed
    /// (once, however many ask meanwhile).
    ///
    /// # Errors
    /// The computation panicked (a bug): the message, for the log.
    pub async fn run(self: &Arc<Self>, task: Task, sel: Selection) -> Result<Answer, String> {
        let version = self.graph.read().version();
        let mut rx = {
            let mut slots = self.slots.lock();
            let slot = slots.entry((task, sel)).or_default();
            if let Some(d) = &slot.done {
                if usable(&d.network, version) {
                    return Ok(answer(d, d.network.version != version));
                }
            }
            let rx = match &slot.running {
                Some(rx) => rx.clone(),
                None => {
                    let rx = self.start(task, sel);
                    slot.running = Some(rx.clone());
                    rx
                }
            };
            if let Some(d) = &slot.done {
                if d.took_ms >= STALE_AFTER_MS {
                    return Ok(answer(d, true));
                }
            }
            rx
        };
        loop {
            if let Some(result) = rx.borrow_and_update().clone() {
                return result.map(|d| answer(&d, false));
            }
            rx.changed().await.map_err(|_| "analytics worker stopped".to_string())?;
        }
    }

    /// The newest cached result of a task, whatever the graph's version (for `/vertices/{user}`).
    pub fn cached(&self, task: Task, sel: Selection) -> Option<Answer> {
        let slots = self.slots.lock();
        let d = slots.get(&(task, sel))?.done.as_ref()?;
        let stale = d.network.version != self.graph.read().version();
        Some(answer(d, stale))
    }

    /// Drops the results (and cached snapshots) on the oldest snapshots until at most
    /// [`HELD_NETWORKS`] distinct ones are held.
    fn hold_networks(&self, slots: &mut HashMap<(Task, Selection), Slot>) {
        let mut nets = self.networks.lock();
        loop {
            let held = held(slots, &nets);
            if held.len() <= HELD_NETWORKS {
                return;
            }
            let oldest = held.into_iter().min_by_key(|n| n.taken).expect("more than one held");
            for s in slots.values_mut() {
                if s.done.as_ref().is_some_and(|d| Arc::ptr_eq(&d.network, &oldest)) {
                    s.done = None;
                }
            }
            nets.retain(|(_, n)| !Arc::ptr_eq(n, &oldest));
        }
    }

    /// How many distinct snapshots the results and the cache hold (tests check the bound).
    pub(crate) fn held_networks(&self) -> usize {
        held(&self.slots.lock(), &self.networks.lock()).len()
    }

    fn start(self: &Arc<Self>, task: Task, sel: Selection) -> Running {
        let (tx, rx) = watch::channel(None);
        let me = self.clone();
        self.jobs.run(move || {
            let t = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let network = me.network(&sel);
                if task.needs_undirected() {
                    network.undirected_on(&me.pool);
                }
                let output = Arc::new(me.pool.install(|| compute(task, &network)));
                (network, output)
            }));
            let order = me.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = match result {
                Ok((network, output)) => Ok(Done {
                    output,
                    network,
                    computed_at: chrono::Utc::now().timestamp(),
                    took_ms: t.elapsed().as_millis() as u64,
                    order,
                }),
                Err(p) => Err(panic_message(&p)),
            };
            let mut slots = me.slots.lock();
            if let Some(slot) = slots.get_mut(&(task, sel)) {
                slot.running = None;
                if let Ok(d) = &result {
                    slot.done = Some(d.clone());
                }
            }
            me.hold_networks(&mut slots);
            if slots.len() > KEPT_RESULTS {
                let oldest = slots
                    .iter()
                    .filter(|(_, s)| s.running.is_none())
                    .min_by_key(|(_, s)| s.done.as_ref().map_or(0, |d| d.order))
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    slots.remove(&k);
                }
            }
            drop(slots);
            let _ = tx.send(Some(result));
        });
        rx
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that run the engine's jobs (an analysis: its snapshot, then its computation; an
/// export's preparation), one job a thread, in the order asked. Jobs wait (for the one snapshot
/// being taken, for the graph's read lock, for another job's undirected view), so they do not
/// run on the rayon pool: a pool thread waiting for its parallel work to finish takes up other
/// queued work meanwhile, and a job started that way, waiting for what the suspended job below it
/// on the same thread holds, would wait forever. Jobs hand their parallel work to the pool with
/// `install`, which, called from a thread outside the pool, just blocks. At normal priority: they
/// hold the graph's read lock while copying; the work they hand over runs at the pool's.
struct Jobs {
    queue: std::sync::mpsc::Sender<Job>,
}

impl Jobs {
    /// `threads` threads; one that waits [`SCRATCH_KEPT`] for a job lets `scratch` go.
    fn start(threads: usize, scratch: Arc<Mutex<Scratch>>) -> std::io::Result<Jobs> {
        use std::sync::mpsc::RecvTimeoutError;
        let (queue, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let (rx, scratch) = (rx.clone(), scratch.clone());
            std::thread::Builder::new().name(format!("tagflow-job-{i}")).spawn(move || loop {
                // The lock is let go before the job runs: the other threads take the next ones.
                let job = rx.lock().recv_timeout(SCRATCH_KEPT);
                match job {
                    Ok(job) => job(),
                    Err(RecvTimeoutError::Timeout) => *scratch.lock() = Scratch::default(),
                    Err(RecvTimeoutError::Disconnected) => return, // the engine is gone
                }
            })?;
        }
        Ok(Jobs { queue })
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        // Fails only once the engine is gone, when nobody waits for the job.
        let _ = self.queue.send(Box::new(job));
    }
}

/// Puts the calling thread below every other: Linux's `SCHED_IDLE`, else the lowest priority of
/// its policy (nice 19). Under `SCHED_IDLE` a thread that wakes (the store's writer after its
/// fsync, a request) takes the core at once, and a core running only such threads counts as idle
/// where a woken thread is placed; a nice-19 thread may first finish its slice (a few ms, on
/// every wake-up of the writer's pipeline).
fn lowest_priority() -> Result<(), thread_priority::Error> {
    use thread_priority::{ThreadPriority, ThreadSchedulePolicy};
    #[cfg(target_os = "linux")]
    {
        let idle = ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle);
        if thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            idle,
        )
        .is_ok()
        {
            return Ok(());
        }
    }
    thread_priority::set_current_thread_priority(ThreadPriority::Min)
}

/// What a caught panic said.
fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "analysis panicked".into())
}

/// Takes a snapshot of a selection; returns it and how long the graph's read lock was held.
/// The copy is taken on the calling thread (at its priority: the writer waits for it), the network
/// built on `pool` (the current rayon pool when `None`), in buffers taken from `scratch` and given
/// back to it for the next snapshot.
pub fn snapshot(
    graph: &SharedGraph,
    sel: &Selection,
    pool: Option<&rayon::ThreadPool>,
    scratch: &mut Scratch,
) -> (Network, std::time::Duration) {
    let t = Instant::now();
    // Room for the copy, touched before the lock is taken (its page faults are not the writer's
    // wait). A window's size is not known beforehand, and is smaller.
    let room = scratch.take();
    let room = if sel.is_windowed() { room } else { super::network::reuse(room, graph.read().edge_bound()) };
    let held = Instant::now();
    let extract = graph.read().extract(sel, room);
    let held = held.elapsed();
    let build = || Network::build_with(extract, sel.min_weight, scratch);
    let mut net = match pool {
        Some(pool) => pool.install(build),
        None => build(),
    };
    net.cost = t.elapsed();
    (net, held)
}

/// The distinct snapshots held by results and the cache.
fn held(slots: &HashMap<(Task, Selection), Slot>, nets: &[(Selection, Arc<Network>)]) -> Vec<Arc<Network>> {
    let mut held: Vec<Arc<Network>> = slots
        .values()
        .filter_map(|s| s.done.as_ref().map(|d| d.network.clone()))
        .chain(nets.iter().map(|(_, n)| n.clone()))
        .collect();
    held.sort_by_key(Arc::as_ptr);
    held.dedup_by(|a, b| Arc::ptr_eq(a, b));
    held
}

/// Whether a snapshot may stand for the graph at `version`: it is that version, or it is big and
/// still young.
fn usable(n: &Network, version: u64) -> bool {
    n.version == version || (n.edges() >= REUSE_MIN_EDGES && n.taken.elapsed() < n.cost * REUSE_FACTOR)
}

fn answer(d: &Done, stale: bool) -> Answer {
    Answer {
        output: d.output.clone(),
        network: d.network.clone(),
        computed_at: d.computed_at,
        took_ms: d.took_ms,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testkit::skewed;

    /// Many analyses asked at once, on snapshots big enough that every parallel part splits across
    /// the pool's threads: each one answers. (A job that waits inside the pool, for a lock or a
    /// value another job on the same thread is making, would hang: work stealing runs the waiting
    /// job on the very thread whose job it waits for.)
    #[test]
    fn analyses_asked_all_at_once_all_answer() {
        let graph: SharedGraph = Arc::new(parking_lot::RwLock::new(skewed(30_000, 280_000, 5, 3, 97)));
        let engine = Engine::new(graph, 2).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut runs = Vec::new();
            for min_weight in 1..=3 {
                let sel = Selection { min_weight, ..Selection::default() };
                for task in [
                    Task::Cores,
                    Task::pagerank(0.85),
                    Task::Components { strong: true },
                    Task::communities(Method::Louvain, 1.0, 1),
                    Task::Betweenness { samples: Some(2), seed: 1 },
                ] {
                    let engine = engine.clone();
                    runs.push(tokio::spawn(async move { engine.run(task, sel).await }));
                }
            }
            for run in runs {
                let answer = tokio::time::timeout(std::time::Duration::from_secs(300), run)
                    .await
                    .expect("every analysis answers: none is stuck behind another")
                    .unwrap();
                assert!(answer.is_ok());
            }
        });
    }

    #[test]
    fn a_snapshots_buffers_are_kept_for_the_next_and_let_go_when_nobody_asks() {
        let graph: SharedGraph = Arc::new(parking_lot::RwLock::new(skewed(3_000, 20_000, 5, 3, 97)));
        let engine = Engine::new(graph.clone(), 1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sel = Selection::default();
        let first = rt.block_on(engine.run(Task::Cores, sel)).unwrap();
        let (kept, edges) = (engine.scratch.lock().bytes(), first.network.edges());
        assert!(
            kept >= 2 * 12 * edges,
            "the edges' copy and the dealt records: {kept} bytes for {edges} edges"
        );
        // The graph changes: the next snapshot takes the kept buffers, and answers the same.
        graph.write().bump_version();
        let again = rt.block_on(engine.run(Task::Cores, sel)).unwrap();
        assert_ne!(again.network.version, first.network.version, "a new snapshot");
        let seen = |a: &Answer| {
            let Output::Cores(cores) = &*a.output else { unreachable!("asked for cores") };
            let n = &a.network;
            let lists: Vec<_> = (0..n.users())
                .map(|u| (n.out(u).0.to_vec(), n.out(u).1.to_vec(), n.inc(u).to_vec()))
                .collect();
            (n.uids.clone(), lists, cores.clone())
        };
        assert!(seen(&again) == seen(&first), "the same network and cores from reused buffers");
        let deadline = Instant::now() + 20 * SCRATCH_KEPT;
        while engine.scratch.lock().bytes() > 0 && Instant::now() < deadline {
            std::thread::sleep(SCRATCH_KEPT / 4);
        }
        assert_eq!(engine.scratch.lock().bytes(), 0, "let go after {SCRATCH_KEPT:?} without a job");
    }
}
