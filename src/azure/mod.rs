//! Azure access: the HTTP transport every client shares, credential selection, and the
//! Resource Manager client.

pub mod arm;
pub mod credential;
pub mod transport;
