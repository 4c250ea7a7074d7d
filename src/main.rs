//! The `syn` command line.

fn main() {}
