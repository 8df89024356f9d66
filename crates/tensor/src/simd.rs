//! Runtime dispatch of the hot kernels to code compiled for AVX2 and FMA.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so its kernels are written once as
//! `#[inline(always)]` bodies generic over `const FMA: bool` and instantiated twice by
//! [`dispatch!`]: a portable build (`FMA = false`: products rounded before they are added) and a
//! build with `#[target_feature(enable = "avx2,fma")]` (8-lane vectors, fused multiply-adds where
//! the body asks for them), chosen at run time from the CPU's features.

/// Whether the CPU has AVX2 and FMA (cached by the standard library after the first call).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Defines `fn $name(args)` that runs `$body::<true>(args)` compiled for AVX2 and FMA on CPUs
/// that have them, and the portable `$body::<false>(args)` elsewhere.
macro_rules! dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::has_avx2_fma() {
                #[target_feature(enable = "avx2,fma")]
                fn fast($($arg: $ty),*) {
                    $body::<true>($($arg),*)
                }
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                return unsafe { fast($($arg),*) };
            }
            $body::<false>($($arg),*)
        }
    };
}

pub(crate) use dispatch;
