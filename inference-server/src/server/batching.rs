//! Dynamic batching: concurrent requests for one model version merged into one model run.

use super::*;

/// One request's rows waiting for a batch, and where its scores go.
pub(crate) struct BatchJob {
    pub(crate) rows: Rows,
    pub(crate) reply: oneshot::Sender<Result<Vec<f32>, InferError>>,
}

/// Dynamic batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Largest number of rows per model run.
    pub max_batch_size: usize,
    /// Extra wait for a batch to fill once a runner is free. Zero (the default, and what to
    /// use) never waits: a request finding a runner idle runs at once, and a batch is what
    /// queued while every runner was busy, so batching adapts to the load by itself.
    pub max_delay: Duration,
}

/// Model runs at once per model version: one per CPU this process may use (each ONNX Runtime
/// session runs on one thread), so that batching never leaves a core idle that unbatched
/// requests would have used.
pub fn runners() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Adaptive batching for one model version, without a task of its own. A request queues its
/// rows and, when a runner is free, becomes one: on a blocking thread it runs everything
/// queued (up to `max_batch_size` rows) and keeps going while more queued meanwhile. Idle, a
/// request runs at once, on the same path as without batching; under load, batches grow with
/// the queue. The runner answers each request itself, so a caller that goes away cannot strand
/// the others in its batch.
pub(crate) struct Batcher {
    model: Arc<Model>,
    batching: Batching,
    queue: std::sync::Mutex<VecDeque<BatchJob>>,
    free: Arc<tokio::sync::Semaphore>,
    rows: Histogram,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("batching", &self.batching)
            .field("queued", &self.lock().len())
            .finish()
    }
}

impl Batcher {
    pub(crate) fn new(model: Arc<Model>, batching: Batching, rows: Histogram) -> Batcher {
        Batcher {
            model,
            batching,
            queue: std::sync::Mutex::new(VecDeque::new()),
            free: Arc::new(tokio::sync::Semaphore::new(runners())),
            rows,
        }
    }

    /// Scores `rows`, alone or in a batch with whatever else queued.
    pub(crate) async fn score(self: &Arc<Self>, rows: Rows) -> Result<Vec<f32>, InferError> {
        // Idle: nothing queued and a runner free. Run alone, on the unbatched path; whatever
        // queues meanwhile is picked up once the run is over (inside the blocking task, so a
        // caller that goes away cannot strand it).
        if self.batching.max_delay.is_zero()
            && self.lock().is_empty()
            && let Ok(runner) = self.free.clone().try_acquire_owned()
        {
            let batcher = self.clone();
            return tokio::task::spawn_blocking(move || {
                batcher.rows.observe(rows.n as f64);
                let scores = batcher.model.run(&rows);
                drop(runner);
                batcher.pick_up();
                scores
            })
            .await
            .map_err(|e| InferError::Internal(format!("inference task failed: {e}")))?;
        }
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(BatchJob { rows, reply });
        if let Ok(runner) = self.free.clone().try_acquire_owned() {
            let batcher = self.clone();
            tokio::task::spawn_blocking(move || batcher.run(runner));
        }
        // Otherwise every runner is busy, and each looks at the queue before it stops.
        answer
            .await
            .map_err(|_| InferError::Internal("the batch runner stopped".into()))?
    }

    /// After a runner's place came free: runs what queued meanwhile, if nobody else does.
    fn pick_up(self: &Arc<Self>) {
        if !self.lock().is_empty()
            && let Ok(runner) = self.free.clone().try_acquire_owned()
        {
            let batcher = self.clone();
            tokio::task::spawn_blocking(move || batcher.run(runner));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<BatchJob>> {
        // A poisoned queue is still a queue: a panic elsewhere must not stop scoring.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Up to `max_batch_size` rows of queued requests (at least one request when any).
    fn take(&self) -> Vec<BatchJob> {
        let mut queue = self.lock();
        let mut jobs = Vec::new();
        let mut total = 0;
        while total < self.batching.max_batch_size
            && let Some(job) = queue.pop_front()
        {
            total += job.rows.n;
            jobs.push(job);
        }
        jobs
    }

    /// A runner: batches until the queue is empty, then frees its place. A request that
    /// queued after the last look but found no free runner is picked up here: the runner
    /// looks again after freeing its place, and runs on if it can take one back.
    fn run(&self, runner: tokio::sync::OwnedSemaphorePermit) {
        let mut runner = Some(runner);
        // Bounded: each round answers at least one queued request; a runner stops when the
        // queue is empty (or another runner has taken over).
        loop {
            let mut jobs = self.take();
            if jobs.is_empty() {
                drop(runner.take());
                if self.lock().is_empty() {
                    return;
                }
                match self.free.clone().try_acquire_owned() {
                    Ok(again) => {
                        runner = Some(again);
                        continue;
                    }
                    Err(_) => return,
                }
            }
            if !self.batching.max_delay.is_zero() {
                let total: usize = jobs.iter().map(|j| j.rows.n).sum();
                if total < self.batching.max_batch_size {
                    std::thread::sleep(self.batching.max_delay);
                    jobs.extend(self.take());
                }
            }
            self.run_batch(jobs);
        }
    }

    /// Runs one batch and hands each request its scores.
    fn run_batch(&self, jobs: Vec<BatchJob>) {
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut combined: Option<Rows> = None;
        for job in jobs {
            sizes.push(job.rows.n);
            replies.push(job.reply);
            match &mut combined {
                None => combined = Some(job.rows),
                Some(c) => c.extend(job.rows),
            }
        }
        let Some(rows) = combined else { return };
        self.rows.observe(rows.n as f64);
        let result = self.model.run(&rows);
        let mut offset = 0;
        for (n, reply) in sizes.into_iter().zip(replies) {
            let part = match &result {
                Ok(scores) => scores
                    .get(offset..offset + n)
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| {
                        InferError::Internal(format!(
                            "the model returned {} scores for a batch of {} rows",
                            scores.len(),
                            offset + n
                        ))
                    }),
                Err(e) => Err(e.clone()),
            };
            offset += n;
            let _ = reply.send(part);
        }
    }
}
