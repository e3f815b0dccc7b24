//! The scalar type the kernels are generic over.
//!
//! Assumes nothing. Guarantees that [`Float`] is implemented only for `f32`
//! (production) and `f64` (gradient checks): the trait is sealed, which is what
//! makes the `gemm` crate dispatch in [`super::gemm`] total (it panics on any
//! other type). Both are `bytemuck::Pod`, so the executor can view a span of
//! its arena as the `u32` argmax that max pooling keeps.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real scalar: `f32` or `f64`.
pub trait Float:
    sealed::Sealed
    + bytemuck::Pod
    + Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Default
    + PartialOrd
    + PartialEq
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    #[inline]
    fn zero() -> Self {
        Self::ZERO
    }
    #[inline]
    fn one() -> Self {
        Self::ONE
    }
    /// Nearest representable value (`as` conversion).
    fn from_f64(v: f64) -> Self;
    /// Exact widening for `f32`, identity for `f64`.
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    /// The larger of the two; if one is NaN, the other (IEEE `maxNum`).
    fn max(self, other: Self) -> Self;
    /// The smaller of the two; if one is NaN, the other.
    fn min(self, other: Self) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    fn is_nan(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Float>() {
        assert_eq!(T::from_f64(1.5).to_f64(), 1.5);
        assert_eq!(T::zero() + T::one(), T::ONE);
        assert!((T::from_f64(2.0).ln().exp().to_f64() - 2.0).abs() < 1e-6);
        assert_eq!(T::from_f64(4.0).powf(T::from_f64(0.5)).to_f64(), 2.0);
        assert_eq!(T::from_f64(-3.0).max(T::zero()).to_f64(), 0.0);
        assert!(T::one().is_finite() && !(T::one() / T::zero()).is_finite());
    }

    #[test]
    fn float_basics_f32_f64() {
        roundtrip::<f32>();
        roundtrip::<f64>();
    }
}
