//! A keyed 64-bit digest, to tell whether something changed without
//! keeping a copy of it. The key is random per process, so input from an
//! API server cannot be made to collide on purpose.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::OnceLock;

pub fn keyed<T: Hash + ?Sized>(value: &T) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(value)
}
