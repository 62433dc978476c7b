//! The artifact registry: blob uploads and downloads ([`oci`], [`uploads`]), typed events
//! logged as entries ([`service`]), and the catalog derived from them ([`catalog`],
//! [`state`]), served under `/registry/v1` ([`api`]).

pub mod api;
pub mod caller;
pub mod catalog;
pub mod grants;
pub mod intoto;
pub mod oci;
pub mod service;
pub mod state;
pub mod uploads;
