//! Each left row's nearest right rows by cosine similarity of their embeddings.

use std::cmp::Ordering;

/// A vector and its length, ready for cosine similarity; `None` for a row without an embedding
/// (a NULL text, or a zero vector).
#[derive(Debug, Clone)]
pub struct Unit {
    values: Vec<f32>,
    norm: f64,
}

impl Unit {
    /// `vector` with its length; `None` when it has none (all zeros, or not finite).
    #[must_use]
    pub fn of(vector: &[f32]) -> Option<Self> {
        let norm = vector
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        (norm.is_finite() && norm > 0.0).then(|| Self {
            values: vector.to_vec(),
            norm,
        })
    }

    /// Cosine similarity with `other` (vectors of different lengths are compared on their
    /// common prefix; an embedding model gives one length).
    #[must_use]
    pub fn cosine(&self, other: &Self) -> f64 {
        let dot: f64 = self
            .values
            .iter()
            .zip(&other.values)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        dot / (self.norm * other.norm)
    }
}

/// For each left row, the indices of its `k` right rows of highest cosine similarity, most
/// similar first; equal similarities keep the right rows' order. A row without an embedding
/// has no candidate and is no candidate.
#[must_use]
pub fn nearest(left: &[Option<Unit>], right: &[Option<Unit>], k: usize) -> Vec<Vec<usize>> {
    let by_score = |a: &(f64, usize), b: &(f64, usize)| -> Ordering {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
    };
    left.iter()
        .map(|l| {
            let Some(l) = l else {
                return Vec::new();
            };
            let mut scored: Vec<(f64, usize)> = right
                .iter()
                .enumerate()
                .filter_map(|(j, r)| r.as_ref().map(|r| (l.cosine(r), j)))
                .collect();
            if scored.len() > k && k > 0 {
                scored.select_nth_unstable_by(k - 1, by_score);
            }
            scored.truncate(k);
            scored.sort_unstable_by(by_score);
            scored.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(vectors: &[&[f32]]) -> Vec<Option<Unit>> {
        vectors.iter().map(|v| Unit::of(v)).collect()
    }

    #[test]
    fn each_left_row_keeps_its_k_most_similar_right_rows_ties_in_row_order() {
        let left = units(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
        let right = units(&[
            &[0.0, 2.0],
            &[1.0, 1.0],
            &[3.0, 0.0],
            &[0.0, 0.5],
            &[0.0, 0.0],
        ]);
        assert_eq!(
            nearest(&left, &right, 2),
            vec![vec![2, 1], vec![0, 3], vec![]]
        );
        assert_eq!(
            nearest(&left, &right, 10),
            vec![vec![2, 1, 0, 3], vec![0, 3, 1, 2], vec![]]
        );
        assert_eq!(nearest(&left, &right, 0), vec![Vec::<usize>::new(); 3]);
    }

    #[test]
    fn cosine_is_scale_free() {
        let a = Unit::of(&[1.0, 2.0]).unwrap();
        let b = Unit::of(&[2.0, 4.0]).unwrap();
        assert!((a.cosine(&b) - 1.0).abs() < 1e-12);
        assert!(Unit::of(&[0.0, 0.0]).is_none());
        assert!(Unit::of(&[f32::NAN]).is_none());
    }
}
