//! Native RDP clients: the listener's [`gate::RdpGate`] (logins, grants, opening sessions), the
//! cap on connections not logged in yet (`preauth`), the one-time tickets of `.rdp` files
//! (`tickets`), and what the gateway learns of RDP targets' identities (`identity`).

pub mod gate;
pub(crate) mod identity;
pub mod preauth;
pub mod tickets;
