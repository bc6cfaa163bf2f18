//! The git part of `cargo xtask bench`: clone and push through a bottle's git gate against the
//! same operations directly against the same local upstream ([`upstream`]).

pub mod upstream;
