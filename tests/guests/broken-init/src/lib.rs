//! Implements the world but traps as soon as it is initialised.

use wrt_sdk::{ChangeEvent, Config, OutputRecord, Transform, TransformError};

struct BrokenInit;

impl Transform for BrokenInit {
    fn init(_: &Config) -> Result<Self, String> {
        panic!("this version is broken: it traps in init")
    }

    fn process(&mut self, _: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        unreachable!("init never returns")
    }
}

wrt_sdk::export_transform!(BrokenInit);
