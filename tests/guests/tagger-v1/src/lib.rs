//! Version 1 of the tagger (see `tagger`).

tagger::versioned!("v1");
