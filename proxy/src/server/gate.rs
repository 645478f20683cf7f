//! Connection limits of one accept loop: a total, beyond which the loop
//! stops accepting (new connections wait in the kernel's backlog, not in
//! memory), and an optional count per client address. Closing connections
//! hand their ticket back over a channel, so no lock is shared.

use std::collections::HashMap;
use std::net::IpAddr;

use tokio::sync::mpsc;

pub(super) struct Gate {
    open: usize,
    max: usize,
    per_client: Option<usize>,
    by_client: HashMap<IpAddr, usize>,
    returned: mpsc::UnboundedReceiver<Option<IpAddr>>,
    sender: mpsc::UnboundedSender<Option<IpAddr>>,
}

/// Held by an open connection; dropping it frees the place.
pub(super) struct Ticket {
    peer: Option<IpAddr>,
    sender: mpsc::UnboundedSender<Option<IpAddr>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.sender.send(self.peer.take());
    }
}

impl Gate {
    pub(super) fn new(max: usize, per_client: Option<usize>) -> Self {
        let (sender, returned) = mpsc::unbounded_channel();
        Self {
            open: 0,
            max: max.max(1),
            per_client,
            by_client: HashMap::new(),
            returned,
            sender,
        }
    }

    /// Waits until fewer than the maximum are open.
    pub(super) async fn room(&mut self) {
        self.collect();
        while self.open >= self.max {
            match self.returned.recv().await {
                Some(peer) => self.release(peer),
                None => std::future::pending().await,
            }
        }
    }

    /// A ticket for a new connection from `peer`, unless that address is at
    /// its limit.
    pub(super) fn admit(&mut self, peer: Option<IpAddr>) -> Option<Ticket> {
        self.collect();
        let tracked = match (self.per_client, peer) {
            (Some(limit), Some(ip)) => {
                let n = self.by_client.entry(ip).or_default();
                if *n >= limit {
                    tracing::debug!(peer = %ip, limit, "connection limit per client reached");
                    return None;
                }
                *n += 1;
                Some(ip)
            }
            _ => None,
        };
        self.open += 1;
        Some(Ticket {
            peer: tracked,
            sender: self.sender.clone(),
        })
    }

    fn collect(&mut self) {
        while let Ok(peer) = self.returned.try_recv() {
            self.release(peer);
        }
    }

    fn release(&mut self, peer: Option<IpAddr>) {
        self.open -= 1;
        if let Some(ip) = peer {
            if let Some(n) = self.by_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.by_client.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_client_and_in_total() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut gate = Gate::new(3, Some(2));
        let t1 = gate.admit(Some(a)).unwrap();
        let _t2 = gate.admit(Some(a)).unwrap();
        assert!(gate.admit(Some(a)).is_none(), "a third from one client");
        let _t3 = gate.admit(Some(b)).unwrap();
        // Full: room() waits until a ticket comes back.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), gate.room());
        assert!(waiting.await.is_err());
        drop(t1);
        gate.room().await;
        assert!(gate.admit(Some(a)).is_some());
    }
}
