//! Collectors: read kernel maps, drain ring buffers, read /proc. They produce raw
//! counts; naming and shaping into metrics is `mapping`'s job.

pub mod agent_self;
pub mod dns;
pub mod fileio;
pub mod host;
pub mod process;
pub mod procfs;
pub mod tcp;
