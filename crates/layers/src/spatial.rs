//! Window sizes and padding arguments of the 2-D layers.

use gradus_tensor::Padding;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{LayerError, Result};

/// A `(height, width)` pair: a kernel size, pool size or strides. From one number (a square
/// window, as Keras' `kernel_size=3`), a tuple or an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size2(pub usize, pub usize);

impl Size2 {
    /// As a `(height, width)` tuple.
    pub fn pair(self) -> (usize, usize) {
        (self.0, self.1)
    }
}

impl From<usize> for Size2 {
    fn from(n: usize) -> Self {
        Size2(n, n)
    }
}

impl From<(usize, usize)> for Size2 {
    fn from((h, w): (usize, usize)) -> Self {
        Size2(h, w)
    }
}

impl From<[usize; 2]> for Size2 {
    fn from([h, w]: [usize; 2]) -> Self {
        Size2(h, w)
    }
}

impl Serialize for Size2 {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        [self.0, self.1].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Size2 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(usize),
            Two([usize; 2]),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::One(n) => Size2(n, n),
            Repr::Two([h, w]) => Size2(h, w),
        })
    }
}

/// Something that names a [`Padding`]: the value itself, or Keras' name `"valid"` / `"same"`.
pub trait IntoPadding {
    /// The padding.
    ///
    /// # Errors
    /// [`LayerError::UnknownName`] for a name other than `"valid"` and `"same"`.
    fn into_padding(self) -> Result<Padding>;
}

impl IntoPadding for Padding {
    fn into_padding(self) -> Result<Padding> {
        Ok(self)
    }
}

impl IntoPadding for &str {
    fn into_padding(self) -> Result<Padding> {
        match self.to_ascii_lowercase().as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            _ => Err(LayerError::UnknownName {
                kind: "padding",
                name: self.to_string(),
                expected: "valid, same".to_string(),
            }),
        }
    }
}

/// Keras' name of a padding.
pub(crate) fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    }
}

/// Serde for a [`Padding`] as Keras' name.
pub(crate) mod padding_serde {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Padding, s: S) -> std::result::Result<S::Ok, S::Error> {
        padding_name(*p).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Padding, D::Error> {
        let name = String::deserialize(d)?;
        name.as_str()
            .into_padding()
            .map_err(serde::de::Error::custom)
    }
}

/// The Keras default padding, `"valid"`.
pub(crate) fn valid() -> Padding {
    Padding::Valid
}
