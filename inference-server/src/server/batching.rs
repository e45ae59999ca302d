//! Dynamic batching: concurrent requests for one model version (or for the embedding model)
//! merged into one run.

use super::*;

/// What a [`Batcher`] batches: requests of several items each (rows to score, texts to embed),
/// concatenated into one run that answers one output per item, in order.
pub(crate) trait Batchable: Send + Sync + 'static {
    /// One request's items.
    type Input: Send + 'static;
    /// What the run answers per item.
    type Output: Send + 'static;
    /// How many items `input` holds.
    fn items(input: &Self::Input) -> usize;
    /// Appends `more` to `input`.
    fn append(input: &mut Self::Input, more: Self::Input);
    /// Runs the items: one output per item, in order.
    fn run(&self, input: &Self::Input) -> Result<Vec<Self::Output>, InferError>;
    /// Runs at once: how many batches may run side by side.
    fn runners(&self) -> usize;
    /// What else bounds a run besides its items (the embedder: word pieces), and the bound:
    /// a batch stops growing once either is reached.
    fn cost(_input: &Self::Input) -> usize {
        0
    }
    /// See [`Batchable::cost`].
    fn budget(&self) -> usize {
        usize::MAX
    }
    /// Whether a run of `items` is short enough to stay on the async thread.
    fn runs_inline(&self, _items: usize) -> bool {
        false
    }
}

impl Batchable for Model {
    type Input = Rows;
    type Output = f32;
    fn items(rows: &Rows) -> usize {
        rows.n
    }
    fn append(rows: &mut Rows, more: Rows) {
        rows.extend(more);
    }
    fn run(&self, rows: &Rows) -> Result<Vec<f32>, InferError> {
        Model::run(self, rows)
    }
    fn runners(&self) -> usize {
        runners()
    }
    fn runs_inline(&self, items: usize) -> bool {
        Model::runs_inline(self, items)
    }
}

/// One request's items waiting for a batch, and where its outputs go.
pub(crate) struct BatchJob<W: Batchable> {
    pub(crate) input: W::Input,
    pub(crate) reply: oneshot::Sender<Result<Vec<W::Output>, InferError>>,
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

/// Short batches one async thread runs in a row before a blocking thread takes over: it reads
/// no new requests meanwhile.
pub const INLINE_BATCHES: usize = 4;

/// Model runs at once per model version: one per CPU this process may use (each ONNX Runtime
/// session runs on one thread), so that batching never leaves a core idle that unbatched
/// requests would have used.
pub fn runners() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Adaptive batching for one model version (or the embedding model), without a task of its
/// own. A request queues its rows and, when a runner is free, becomes one: it runs everything
/// queued (up to `max_batch_size` rows) and keeps going while more queued meanwhile, on a
/// blocking thread, or on its own async thread while the runs are short
/// ([`Batchable::runs_inline`]). Idle, a request runs at once, on the same path as without
/// batching; under load, batches grow with the queue. The runner answers each request itself,
/// so a caller that goes away cannot strand the others in its batch.
pub(crate) struct Batcher<W: Batchable> {
    model: Arc<W>,
    batching: Batching,
    queue: std::sync::Mutex<VecDeque<BatchJob<W>>>,
    free: Arc<tokio::sync::Semaphore>,
    rows: Histogram,
}

impl<W: Batchable> std::fmt::Debug for Batcher<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("batching", &self.batching)
            .field("queued", &self.lock().len())
            .finish()
    }
}

impl<W: Batchable> Batcher<W> {
    /// `rows` observes the items of every run.
    pub(crate) fn new(model: Arc<W>, batching: Batching, rows: Histogram) -> Batcher<W> {
        let runners = model.runners().max(1);
        Batcher {
            model,
            batching,
            queue: std::sync::Mutex::new(VecDeque::new()),
            free: Arc::new(tokio::sync::Semaphore::new(runners)),
            rows,
        }
    }

    /// Runs `input`, alone or in a batch with whatever else queued: one output per item.
    pub(crate) async fn score(
        self: &Arc<Self>,
        input: W::Input,
    ) -> Result<Vec<W::Output>, InferError> {
        // Idle: nothing queued and a runner free. Run alone, on the unbatched path; whatever
        // queues meanwhile is picked up once the run is over (inside the blocking task, so a
        // caller that goes away cannot strand it).
        if self.batching.max_delay.is_zero()
            && self.lock().is_empty()
            && let Ok(runner) = self.free.clone().try_acquire_owned()
        {
            let items = W::items(&input);
            if self.model.runs_inline(items) {
                self.rows.observe(items as f64);
                let outputs = self.model.run(&input);
                // Whatever queued meanwhile, on this thread too while its runs are short.
                self.run_here(runner);
                return outputs;
            }
            let batcher = self.clone();
            return tokio::task::spawn_blocking(move || {
                batcher.rows.observe(W::items(&input) as f64);
                let scores = batcher.model.run(&input);
                drop(runner);
                batcher.pick_up();
                scores
            })
            .await
            .map_err(|e| InferError::Internal(format!("inference task failed: {e}")))?;
        }
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(BatchJob { input, reply });
        if let Ok(runner) = self.free.clone().try_acquire_owned() {
            self.run_here(runner);
        }
        // Otherwise every runner is busy, and each looks at the queue before it stops.
        answer
            .await
            .map_err(|_| InferError::Internal("the batch runner stopped".into()))?
    }

    /// Runs what queued on this async thread while a batch of it is expected to be short
    /// ([`Batchable::runs_inline`]), at most [`INLINE_BATCHES`] batches; a blocking thread
    /// takes over the rest. A cheap model under load so never pays the hops to a blocking
    /// thread and back that no batching would not pay either.
    fn run_here(self: &Arc<Self>, runner: tokio::sync::OwnedSemaphorePermit) {
        let mut runner = Some(runner);
        for _ in 0..INLINE_BATCHES {
            let queued = self.queued_items();
            if queued == 0 {
                if self.stop_or_retake(&mut runner) {
                    continue;
                }
                return;
            }
            if !self.batching.max_delay.is_zero() || !self.model.runs_inline(queued) {
                break;
            }
            let jobs = self.take();
            self.run_batch(jobs);
        }
        if let Some(runner) = runner {
            let batcher = self.clone();
            tokio::task::spawn_blocking(move || batcher.run(runner));
        }
    }

    /// After the queue looked empty: frees the runner's place, then takes it back if a request
    /// queued after the look but found no free runner (true: go on running).
    fn stop_or_retake(&self, runner: &mut Option<tokio::sync::OwnedSemaphorePermit>) -> bool {
        drop(runner.take());
        if self.lock().is_empty() {
            return false;
        }
        match self.free.clone().try_acquire_owned() {
            Ok(again) => {
                *runner = Some(again);
                true
            }
            Err(_) => false,
        }
    }

    /// The items of the next batch: what queued, up to `max_batch_size`.
    fn queued_items(&self) -> usize {
        let queue = self.lock();
        let mut total = 0;
        for job in queue.iter() {
            if total >= self.batching.max_batch_size {
                break;
            }
            total += W::items(&job.input);
        }
        total
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

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<BatchJob<W>>> {
        // A poisoned queue is still a queue: a panic elsewhere must not stop scoring.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queued requests up to `max_batch_size` items and the model's budget (at least one
    /// request when any).
    fn take(&self) -> Vec<BatchJob<W>> {
        let budget = self.model.budget();
        let mut queue = self.lock();
        let mut jobs = Vec::new();
        let (mut total, mut cost) = (0, 0);
        while total < self.batching.max_batch_size
            && cost < budget
            && let Some(job) = queue.pop_front()
        {
            total += W::items(&job.input);
            cost += W::cost(&job.input);
            jobs.push(job);
        }
        jobs
    }

    /// A runner: batches until the queue is empty, then frees its place. A request that
    /// queued after the last look but found no free runner is picked up here: the runner
    /// looks again after freeing its place, and runs on if it can take one back.
    fn run(self: &Arc<Self>, runner: tokio::sync::OwnedSemaphorePermit) {
        let mut runner = Some(runner);
        // Bounded: each round answers at least one queued request; a runner stops when the
        // queue is empty (or another runner has taken over).
        loop {
            let mut jobs = self.take();
            if jobs.is_empty() {
                if self.stop_or_retake(&mut runner) {
                    continue;
                }
                return;
            }
            if !self.batching.max_delay.is_zero() {
                let total: usize = jobs.iter().map(|j| W::items(&j.input)).sum();
                if total < self.batching.max_batch_size {
                    std::thread::sleep(self.batching.max_delay);
                    jobs.extend(self.take());
                }
            }
            self.run_batch(jobs);
            // Short runs again (the first runs of a model are measured here): the async
            // threads take the queue back, so that a cheap model under load does not stay
            // on this thread, a hop away from every request.
            if self.batching.max_delay.is_zero()
                && self.model.runs_inline(self.queued_items().max(1))
                && let Ok(handle) = tokio::runtime::Handle::try_current()
                && let Some(runner) = runner.take()
            {
                let batcher = self.clone();
                handle.spawn(async move { batcher.run_here(runner) });
                return;
            }
        }
    }

    /// Runs one batch and hands each request its outputs.
    fn run_batch(&self, jobs: Vec<BatchJob<W>>) {
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut combined: Option<W::Input> = None;
        for job in jobs {
            sizes.push(W::items(&job.input));
            replies.push(job.reply);
            match &mut combined {
                None => combined = Some(job.input),
                Some(c) => W::append(c, job.input),
            }
        }
        let Some(input) = combined else { return };
        let total: usize = sizes.iter().sum();
        self.rows.observe(total as f64);
        let outputs = self.model.run(&input).and_then(|outputs| {
            if outputs.len() == total {
                Ok(outputs)
            } else {
                Err(InferError::Internal(format!(
                    "the model answered {} outputs for a batch of {total} items",
                    outputs.len()
                )))
            }
        });
        match outputs {
            Ok(outputs) => {
                let mut outputs = outputs.into_iter();
                for (n, reply) in sizes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(outputs.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
