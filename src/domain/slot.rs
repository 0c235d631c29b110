//! A key slot: one of a resource's two keys. Providers name them (`key1`/`key2`,
//! `primary`/`secondary`); the engine only needs to know which is which and the other one.

use std::fmt;

/// One of the two keys of a dual-key resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    First,
    Second,
}

impl Slot {
    /// The slot keyflip may regenerate when `self` is active.
    pub fn other(self) -> Self {
        match self {
            Slot::First => Slot::Second,
            Slot::Second => Slot::First,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::First => "first",
            Slot::Second => "second",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_flips() {
        assert_eq!(Slot::First.other(), Slot::Second);
        assert_eq!(Slot::Second.other().other(), Slot::Second);
    }
}
