//! Records split into jobs: as few jobs as the per-job limits allow (50,000 records, one input
//! file of at most 1 GB each), the records spread evenly over them so that none has fewer than
//! the service's 100.

use std::ops::Range;

use super::{MAX_BYTES_PER_FILE, MAX_RECORDS_PER_JOB};

/// The records of one job: a range of the query's records, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Which records (indices into the query's distinct requests).
    pub records: Range<usize>,
}

/// Splits records of the given JSONL line sizes (newline included) into jobs within
/// `max_records` records and `max_bytes` bytes each (the service's limits by default, see
/// [`shards`]): the fewest jobs, each of an even share of the records, then any job over the
/// byte limit split in halves until it fits.
#[must_use]
pub fn shards_within(line_sizes: &[usize], max_records: usize, max_bytes: usize) -> Vec<Shard> {
    let n = line_sizes.len();
    if n == 0 {
        return Vec::new();
    }
    let jobs = n.div_ceil(max_records.max(1));
    let mut out = Vec::with_capacity(jobs);
    let mut start = 0;
    for j in 0..jobs {
        // Even shares: the first `n % jobs` jobs take one record more.
        let size = n / jobs + usize::from(j < n % jobs);
        split_by_bytes(line_sizes, start..start + size, max_bytes, &mut out);
        start += size;
    }
    out
}

/// [`shards_within`] at the service's limits: 50,000 records and 1 GB per job.
#[must_use]
pub fn shards(line_sizes: &[usize]) -> Vec<Shard> {
    shards_within(line_sizes, MAX_RECORDS_PER_JOB, MAX_BYTES_PER_FILE)
}

fn split_by_bytes(sizes: &[usize], records: Range<usize>, max_bytes: usize, out: &mut Vec<Shard>) {
    let bytes: usize = sizes[records.clone()].iter().sum();
    if bytes <= max_bytes || records.len() <= 1 {
        out.push(Shard { records });
        return;
    }
    let middle = records.start + records.len() / 2;
    split_by_bytes(sizes, records.start..middle, max_bytes, out);
    split_by_bytes(sizes, middle..records.end, max_bytes, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(shards: &[Shard]) -> Vec<usize> {
        shards.iter().map(|s| s.records.len()).collect()
    }

    #[test]
    fn one_job_up_to_the_limit() {
        assert_eq!(shards(&[100; 600]), vec![Shard { records: 0..600 }]);
        assert_eq!(lengths(&shards(&vec![10; 50_000])), vec![50_000]);
        assert!(shards(&[]).is_empty());
    }

    #[test]
    fn more_records_than_a_job_takes_are_spread_evenly() {
        let split = shards(&vec![200; 120_000]);
        assert_eq!(lengths(&split), vec![40_000, 40_000, 40_000]);
        assert_eq!(split[1].records, 40_000..80_000);
        // 50,050 records: two even jobs, never a job of 50 (below the service's 100)
        assert_eq!(lengths(&shards(&vec![1; 50_050])), vec![25_025, 25_025]);
        assert_eq!(
            lengths(&shards(&vec![1; 100_001])),
            vec![33_334, 33_334, 33_333]
        );
    }

    #[test]
    fn big_records_split_a_job_by_bytes() {
        let split = shards_within(&[400; 1000], 50_000, 100_000);
        assert_eq!(lengths(&split), vec![250, 250, 250, 250]);
        assert_eq!(
            split.iter().map(|s| s.records.start).collect::<Vec<_>>(),
            vec![0, 250, 500, 750]
        );
    }
}
