//! Training-set statistics: the mean image, per-channel mean and standard
//! deviation, and the principal components of RGB pixel values used by the
//! paper's "PCA lighting" augmentation.
//!
//! Assumes a [`Split`] of `u8` CHW images (see [`super`]). Guarantees:
//!
//! - `mean_image`, `channel_mean` and `channel_std` are in raw **0..255**
//!   units. `mean_image` is the **per-pixel** mean over the training set
//!   (shape `c × h × w`, CHW), which is what the paper subtracts.
//! - The RGB covariance is computed over **all pixels of all training
//!   images** with values scaled to **[0, 1]** (so the eigenvalues are in
//!   [0,1]² units, as in the widely used ImageNet constants 0.2175, 0.0188,
//!   0.0045). [`Pca::offset`] therefore returns a [0, 1]-unit offset; the
//!   augmenter multiplies it by 255 before adding it to 0..255 pixels.
//! - Sums are accumulated in exact integer arithmetic, so the statistics do
//!   not depend on how the work is split across threads.
//! - Eigenvalues come sorted in decreasing order, eigenvectors are unit
//!   length, mutually orthogonal, and signed so that their largest-magnitude
//!   component is positive.

use rayon::prelude::*;

use super::{Shape, Split};

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations:
/// returns `(λ, V)` with `λ` sorted decreasing and the eigenvectors as the
/// **columns** of `V` (`V[row][col]`), so that `A = V · diag(λ) · Vᵀ`.
/// `a` is assumed symmetric (both triangles are read and rotated).
pub fn sym_eigen3(a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = a;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let norm: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>();
    for _sweep in 0..64 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        if off <= norm * 1e-32 || off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            // Rotation J with J[p][p] = J[q][q] = c, J[p][q] = s,
            // J[q][p] = -s that zeroes a[p][q] in Jᵀ A J.
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            for row in a.iter_mut() {
                let (kp, kq) = (row[p], row[q]);
                row[p] = c * kp - s * kq;
                row[q] = s * kp + c * kq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = std::array::from_fn(|k| c * rp[k] - s * rq[k]);
            a[q] = std::array::from_fn(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (kp, kq) = (row[p], row[q]);
                row[p] = c * kp - s * kq;
                row[q] = s * kp + c * kq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let mut vals = [0.0; 3];
    let mut vecs = [[0.0; 3]; 3];
    for (col, &src) in order.iter().enumerate() {
        vals[col] = a[src][src];
        let big = (0..3)
            .max_by(|&i, &j| v[i][src].abs().total_cmp(&v[j][src].abs()))
            .unwrap_or(0);
        let sign = if v[big][src] < 0.0 { -1.0 } else { 1.0 };
        for row in 0..3 {
            vecs[row][col] = sign * v[row][src];
        }
    }
    (vals, vecs)
}

/// Principal components of RGB pixel values ([0,1] units; see the module
/// documentation): `eigvec[row][i]` is component `row` (R, G, B) of the
/// `i`-th eigenvector, whose eigenvalue is `eigval[i]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pca {
    pub eigval: [f32; 3],
    pub eigvec: [[f32; 3]; 3],
}

impl Pca {
    /// The paper's lighting offset `[p1 p2 p3] · [α1 λ1, α2 λ2, α3 λ3]ᵀ`, in
    /// [0, 1] units, per channel R, G, B.
    pub fn offset(&self, alpha: [f32; 3]) -> [f32; 3] {
        let mut out = [0.0f32; 3];
        for (row, o) in out.iter_mut().enumerate() {
            *o = (0..3)
                .map(|i| self.eigvec[row][i] * alpha[i] * self.eigval[i])
                .sum();
        }
        out
    }
}

/// Statistics of a training split. See the module documentation for units.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub shape: Shape,
    /// Per-pixel mean, `c × h × w` CHW, 0..255 units.
    pub mean_image: Vec<f32>,
    /// Per-channel mean over all pixels, 0..255 units.
    pub channel_mean: Vec<f32>,
    /// Per-channel standard deviation over all pixels, 0..255 units.
    pub channel_std: Vec<f32>,
    /// The RGB covariance ([0,1] units), present for 3-channel data only.
    pub covariance: Option<[[f64; 3]; 3]>,
    /// Its eigen-decomposition, present for 3-channel data only.
    pub pca: Option<Pca>,
}

/// Integer accumulators for one chunk of images (exact, so the order in
/// which images are added does not matter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acc {
    pub(crate) pixel_sum: Vec<u64>,
    /// Σ x_k x_l over pixels for channel pairs k < l < 3 (RGB only; the
    /// diagonal comes from `chan_sq`).
    pub(crate) cross: [[u64; 3]; 3],
    /// Σ x_k and Σ x_k² for every channel.
    pub(crate) chan_sum: Vec<u64>,
    pub(crate) chan_sq: Vec<u64>,
}

impl Acc {
    pub(crate) fn new(shape: Shape) -> Self {
        Acc {
            pixel_sum: vec![0; shape.len()],
            cross: [[0; 3]; 3],
            chan_sum: vec![0; shape.c],
            chan_sq: vec![0; shape.c],
        }
    }
    pub(crate) fn add(mut self, shape: Shape, img: &[u8]) -> Self {
        let plane = shape.h * shape.w;
        for (s, &p) in self.pixel_sum.iter_mut().zip(img) {
            *s += p as u64;
        }
        for k in 0..shape.c {
            let ch = &img[k * plane..(k + 1) * plane];
            self.chan_sum[k] += ch.iter().map(|&p| p as u64).sum::<u64>();
            self.chan_sq[k] += ch.iter().map(|&p| (p as u64) * (p as u64)).sum::<u64>();
        }
        if shape.c == 3 {
            let (r, g, b) = (&img[..plane], &img[plane..2 * plane], &img[2 * plane..]);
            let (mut rg, mut rb, mut gb) = (0u64, 0u64, 0u64);
            for i in 0..plane {
                let (r, g, b) = (r[i] as u64, g[i] as u64, b[i] as u64);
                rg += r * g;
                rb += r * b;
                gb += g * b;
            }
            self.cross[0][1] += rg;
            self.cross[0][2] += rb;
            self.cross[1][2] += gb;
        }
        self
    }
    pub(crate) fn merge(mut self, o: Acc) -> Self {
        for (a, b) in self.pixel_sum.iter_mut().zip(&o.pixel_sum) {
            *a += b;
        }
        for k in 0..self.chan_sum.len() {
            self.chan_sum[k] += o.chan_sum[k];
            self.chan_sq[k] += o.chan_sq[k];
        }
        for k in 0..3 {
            for l in 0..3 {
                self.cross[k][l] += o.cross[k][l];
            }
        }
        self
    }
}

impl Stats {
    /// Computes the statistics of `split` (in parallel; the result does not
    /// depend on the thread count). An empty split gives zero means, zero
    /// deviations and, for RGB, a zero covariance.
    pub fn compute(split: &Split) -> Stats {
        let shape = split.shape;
        let acc = (0..split.len())
            .into_par_iter()
            .fold(|| Acc::new(shape), |acc, i| acc.add(shape, split.image(i)))
            .reduce(|| Acc::new(shape), Acc::merge);
        Stats::from_acc(shape, split.len(), &acc)
    }

    /// The statistics of `n` images of `shape` whose sums are `acc`.
    pub(crate) fn from_acc(shape: Shape, n: usize, acc: &Acc) -> Stats {
        let n = n.max(1) as f64;
        let pixels = n * (shape.h * shape.w) as f64;
        let mean_image = acc
            .pixel_sum
            .iter()
            .map(|&s| (s as f64 / n) as f32)
            .collect();
        let cm: Vec<f64> = acc.chan_sum.iter().map(|&s| s as f64 / pixels).collect();
        let var: Vec<f64> = (0..shape.c)
            .map(|k| (acc.chan_sq[k] as f64 / pixels - cm[k] * cm[k]).max(0.0))
            .collect();
        let (covariance, pca) = if shape.c == 3 {
            let mut cov = [[0.0f64; 3]; 3];
            for k in 0..3 {
                for l in 0..3 {
                    let exy = if k == l {
                        acc.chan_sq[k] as f64 / pixels
                    } else {
                        acc.cross[k.min(l)][k.max(l)] as f64 / pixels
                    };
                    cov[k][l] = (exy - cm[k] * cm[l]) / (255.0 * 255.0);
                }
            }
            let (vals, vecs) = sym_eigen3(cov);
            let pca = Pca {
                eigval: vals.map(|v| v.max(0.0) as f32),
                eigvec: vecs.map(|row| row.map(|x| x as f32)),
            };
            (Some(cov), Some(pca))
        } else {
            (None, None)
        };
        Stats {
            shape,
            mean_image,
            channel_mean: cm.iter().map(|&m| m as f32).collect(),
            channel_std: var.iter().map(|&v| v.sqrt() as f32).collect(),
            covariance,
            pca,
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn reconstruct(vals: [f64; 3], v: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = (0..3).map(|k| v[i][k] * vals[k] * v[j][k]).sum();
            }
        }
        m
    }

    fn check(a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
        let (vals, v) = sym_eigen3(a);
        let r = reconstruct(vals, v);
        let scale = a.iter().flatten().fold(1.0f64, |m, x| m.max(x.abs()));
        for i in 0..3 {
            for j in 0..3 {
                assert!((r[i][j] - a[i][j]).abs() < 1e-12 * scale, "{a:?} -> {r:?}");
                let dot: f64 = (0..3).map(|k| v[k][i] * v[k][j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "VᵀV[{i}][{j}] = {dot}");
            }
            // A v = λ v.
            for row in 0..3 {
                let av: f64 = (0..3).map(|k| a[row][k] * v[k][i]).sum();
                assert!((av - vals[i] * v[row][i]).abs() < 1e-12 * scale);
            }
        }
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2], "{vals:?}");
        (vals, v)
    }

    #[test]
    fn eigen_hand_cases() {
        // Diagonal: eigenvalues sorted, vectors are the axes.
        let (vals, v) = check([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 2.0]]);
        assert_eq!(vals, [3.0, 2.0, 1.0]);
        assert_eq!(v, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        // A 2×2 block plus an axis: eigenvalues 5, 3, 1.
        let (vals, v) = check([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]]);
        for (got, want) in vals.iter().zip([5.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{vals:?}");
        }
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let col = |i: usize| [v[0][i], v[1][i], v[2][i]];
        let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(col(0), [0.0, 0.0, 1.0]), "{v:?}");
        assert!(close(col(1), [h, h, 0.0]), "{v:?}");
        // (1, -1, 0)/√2 up to sign (its two components tie in magnitude).
        assert!(
            close(col(2), [h, -h, 0.0]) || close(col(2), [-h, h, 0.0]),
            "{v:?}"
        );
        // All-equal entries: rank one, eigenvalue 3 along (1,1,1)/√3.
        let (vals, v) = check([[1.0; 3]; 3]);
        assert!((vals[0] - 3.0).abs() < 1e-12 && vals[1].abs() < 1e-12 && vals[2].abs() < 1e-12);
        let s = 1.0 / 3f64.sqrt();
        assert!(close(col_of(&v, 0), [s, s, s]), "{v:?}");
        // Repeated eigenvalues and the zero matrix.
        let (vals, _) = check([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]);
        assert_eq!(vals, [4.0; 3]);
        let (vals, _) = check([[0.0; 3]; 3]);
        assert_eq!(vals, [0.0; 3]);
        // Negative eigenvalues are sorted too.
        let (vals, _) = check([[0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -1.0]]);
        assert!((vals[0] - 2.0).abs() < 1e-12 && (vals[1] + 1.0).abs() < 1e-12);
        assert!((vals[2] + 2.0).abs() < 1e-12);
    }

    fn col_of(v: &[[f64; 3]; 3], i: usize) -> [f64; 3] {
        [v[0][i], v[1][i], v[2][i]]
    }

    #[test]
    fn eigen_pseudo_random_matrices_reconstruct() {
        let mut rng = crate::rng::Rng::new(11, crate::rng::stream_of("test/eigen"));
        for _ in 0..200 {
            let mut a = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in i..3 {
                    let x = rng.normal() * 10f64.powi(rng.below(5) as i32 - 2);
                    a[i][j] = x;
                    a[j][i] = x;
                }
            }
            check(a);
        }
        // A typical ImageNet-like covariance.
        let (vals, v) = check([
            [0.0706, 0.0640, 0.0577],
            [0.0640, 0.0660, 0.0633],
            [0.0577, 0.0633, 0.0713],
        ]);
        assert!(vals[0] > 10.0 * vals[1]);
        assert!(
            col_of(&v, 0).iter().all(|&x| x > 0.5),
            "luminance first: {v:?}"
        );
    }

    #[test]
    fn stats_of_synthetic_split() {
        // Two 3×1×2 images. Image 0: R = (0, 255), G = R, B = 0.
        // Image 1: R = (255, 255), G = R, B = 0.
        let shape = Shape::new(3, 1, 2);
        let split = Split {
            shape,
            images: vec![0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 0, 0],
            labels: vec![0, 1],
        };
        let st = Stats::compute(&split);
        assert_eq!(st.mean_image, vec![127.5, 255.0, 127.5, 255.0, 0.0, 0.0]);
        assert_eq!(st.channel_mean, vec![191.25, 191.25, 0.0]);
        // R over pixels {0, 255, 255, 255}: var = 3/16 (in [0,1] units).
        let std = (3.0f64 / 16.0).sqrt() * 255.0;
        assert!((st.channel_std[0] as f64 - std).abs() < 1e-3);
        let cov = st.covariance.expect("rgb");
        let want = 3.0 / 16.0;
        assert!((cov[0][0] - want).abs() < 1e-12 && (cov[0][1] - want).abs() < 1e-12);
        assert!(cov[2].iter().all(|&x| x == 0.0));
        let pca = st.pca.expect("rgb");
        assert!((pca.eigval[0] as f64 - 2.0 * want).abs() < 1e-6, "{pca:?}");
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((pca.eigvec[0][0] - h).abs() < 1e-6 && (pca.eigvec[1][0] - h).abs() < 1e-6);
        // Offset along the first component only.
        let o = pca.offset([1.0, 0.0, 0.0]);
        assert!(
            (o[0] - h * pca.eigval[0]).abs() < 1e-6 && o[2].abs() < 1e-6,
            "{o:?}"
        );
        // Grayscale data has no PCA.
        let gray = Split {
            shape: Shape::new(1, 1, 2),
            images: vec![1, 2],
            labels: vec![0],
        };
        let st = Stats::compute(&gray);
        assert!(st.pca.is_none() && st.covariance.is_none());
        assert_eq!(st.mean_image, vec![1.0, 2.0]);
    }
}
