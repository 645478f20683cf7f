//! The route table and the store that publishes it.

mod data;
mod discovered;
pub(crate) mod key;
mod store;
mod table;

pub use discovered::{DiscoveredLayer, DiscoveredRoute, Rejected};
pub use store::RouteStore;
pub use table::{Layer, Route, RouteTable};
