//! Palisade dialect compilers (work in progress).
