//! Reference evaluator (in progress).
