//! SQLite registry (to be written).
