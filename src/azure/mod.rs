//! Azure access: the HTTP transport every client shares, credential selection, the Resource
//! Manager client, and URLs built from segments.

pub mod arm;
pub mod credential;
pub mod limits;
pub mod transport;
pub mod urls;
