//! A tagger that traps on every event: a shadow that must leave the live output alone.

use wrt_sdk::{ChangeEvent, Config, OutputRecord, Transform, TransformError};

struct Trap;

impl Transform for Trap {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(Trap)
    }

    fn process(&mut self, event: ChangeEvent) -> Result<Vec<OutputRecord>, TransformError> {
        panic!("tagger-trap traps on {}", event.source.offset)
    }
}

wrt_sdk::export_transform!(Trap);
