//! End-to-end and sandbox tests.
