//! Human preference pairs straight from the store.
