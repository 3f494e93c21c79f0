pub mod event;
pub mod money;
pub mod sources;
