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
    /// Longest wait for a batch to fill.
    pub max_delay: Duration,
}

/// A boxed batch job (keeps the channel type private).
pub struct BatchJobHandle(pub(crate) BatchJob);

impl std::fmt::Debug for BatchJobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchJob({} rows)", self.0.rows.n)
    }
}

pub(super) async fn batch_loop(
    model: Arc<Model>,
    mut rx: mpsc::Receiver<BatchJobHandle>,
    batching: Batching,
    rows_histogram: Histogram,
) {
    while let Some(BatchJobHandle(first)) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + batching.max_delay;
        let mut jobs = vec![first];
        let mut total = jobs[0].rows.n;
        while total < batching.max_batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(BatchJobHandle(job))) => {
                    total += job.rows.n;
                    jobs.push(job);
                }
                _ => break,
            }
        }
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
        let Some(rows) = combined else { continue };
        rows_histogram.observe(rows.n as f64);
        let m = model.clone();
        let result = tokio::task::spawn_blocking(move || m.run(&rows))
            .await
            .unwrap_or_else(|e| Err(InferError::Internal(format!("inference task failed: {e}"))));
        let mut offset = 0;
        for (n, reply) in sizes.into_iter().zip(replies) {
            let part = result
                .as_ref()
                .map(|s| s[offset..offset + n].to_vec())
                .map_err(Clone::clone);
            offset += n;
            let _ = reply.send(part);
        }
    }
}
