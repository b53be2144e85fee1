//! Hearth's capacity logic (temporary header, replaced below).
pub mod budget;
pub mod clock;
pub mod ids;
pub mod inventory;
pub mod keepalive;
pub mod manager;
pub mod placement;
pub mod policy;
pub mod profile;
pub mod replay;
mod rng;
pub mod sizing;
