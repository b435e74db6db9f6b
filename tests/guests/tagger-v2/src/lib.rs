//! Version 2 of the tagger (see `tagger`).

tagger::versioned!("v2");
