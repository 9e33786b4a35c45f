//! The Thales payShield host command subset: [`codec`] (sans-IO commands and
//! responses), [`client`] ([`ThalesClient`], pipelining, implements
//! [`crate::SecurityModule`]) and [`server`] (the same commands served by a
//! [`crate::SoftHsm`], for `hsm_sim` and tests).

pub mod client;
pub mod codec;
pub mod server;

pub use client::{ClientConfig, Diagnostics, HeaderMode, ThalesClient};
pub use server::{serve, ServerConfig};
