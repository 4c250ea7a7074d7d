//! Tests of the layer, on real LMDB files and logs in temporary directories.
