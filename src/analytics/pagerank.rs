//! PageRank, as NetworkX defines it: directed, weighted by edge weight, teleport and dangling mass
//! spread uniformly, iterated until the L1 change is below `users × tol`.

use super::network::Network;
use rayon::prelude::*;

/// Scores (summing to 1) and how the iteration went.
pub struct PageRank {
    pub scores: Vec<f64>,
    pub iterations: u32,
    pub converged: bool,
}

/// Users per chunk of a sum over users.
const CHUNK: usize = 1 << 14;

/// Power iteration, pulling along in-edges (each user's new score is a sum over its in-list, so the
/// work splits over threads without shared writes).
pub fn pagerank(net: &Network, damping: f64, tol: f64, max_iter: u32) -> PageRank {
    let n = net.users();
    if n == 0 {
        return PageRank { scores: Vec::new(), iterations: 0, converged: true };
    }
    let nf = n as f64;
    let strength: Vec<f64> = (0..n).into_par_iter().map(|u| net.out_strength(u) as f64).collect();
    let mut x = vec![1.0 / nf; n];
    let mut next = vec![0.0; n];
    let mut share = vec![0.0; n];
    for it in 1..=max_iter {
        let dangling: f64 = (0..n).filter(|&u| strength[u] == 0.0).map(|u| x[u]).sum();
        share.par_iter_mut().enumerate().for_each(|(u, s)| {
            *s = if strength[u] > 0.0 { x[u] / strength[u] } else { 0.0 };
        });
        let base = damping * dangling / nf + (1.0 - damping) / nf;
        next.par_iter_mut().enumerate().for_each(|(v, out)| {
            *out = damping * net.pull(v, &share) + base;
        });
        // Summed in fixed chunks, in order: the same iterations whatever the thread count.
        let err: f64 = next
            .par_chunks(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .map(|(a, b)| a.iter().zip(b).map(|(a, b)| (a - b).abs()).sum::<f64>())
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        std::mem::swap(&mut x, &mut next);
        if err < nf * tol {
            return PageRank { scores: x, iterations: it, converged: true };
        }
    }
    PageRank { scores: x, iterations: max_iter, converged: false }
}

#[cfg(test)]
mod tests {
    use super::super::network::tests::net;
    use super::*;

    #[test]
    fn a_star_ranks_its_centre_first_and_scores_sum_to_one() {
        // 1, 2, 3 repost 0; 0 is dangling.
        let n = net(&[(1, 0, 1), (2, 0, 2), (3, 0, 1)], 1);
        let pr = pagerank(&n, 0.85, 1e-12, 200);
        assert!(pr.converged);
        assert!((pr.scores.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(pr.scores[0] > 3.0 * pr.scores[1]);
        // Worked by hand: leaves all get (1-d)/n + d*x0/n; x0 = leaves + d*sum(leaves)...
        let leaf = pr.scores[1];
        assert!((pr.scores[1] - pr.scores[3]).abs() < 1e-12 && (leaf - pr.scores[2]).abs() < 1e-12);
    }
}
