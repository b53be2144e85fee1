//! Content-addressed code store (to be written).
