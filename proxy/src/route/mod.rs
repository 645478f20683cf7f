//! The route table and the store that publishes it.

mod data;
pub(crate) mod key;
mod store;
mod table;

pub use store::RouteStore;
pub use table::{Layer, Route, RouteTable};
