//! Stratified k-fold assignment.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

/// Assigns each row to one of `k` folds so that every fold has about the same share of each
/// label; shuffled with `seed`.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    for class in [false, true] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rows.shuffle(&mut rng);
        for (n, row) in rows.into_iter().enumerate() {
            fold[row] = n % k.max(1);
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_the_label_share() {
        let labels: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let folds = stratified_folds(&labels, 5, 0);
        for f in 0..5 {
            let rows: Vec<usize> = (0..1000).filter(|&i| folds[i] == f).collect();
            let positives = rows.iter().filter(|&&i| labels[i]).count();
            assert_eq!((rows.len(), positives), (200, 50));
        }
        assert_eq!(folds, stratified_folds(&labels, 5, 0));
    }
}
