//! The cloud-metadata block on a node: the nftables ruleset (in `nft -j`'s
//! JSON form) that refuses what the node forwards from its swarm
//! containers (their traffic off the overlay leaves through
//! `docker_gwbridge`) to the blocked addresses. A table of its own, in a
//! base chain ahead of Docker's filter chains: whichever backend Docker's
//! iptables uses (legacy or nft), a packet refused here goes no further.

use serde_json::{Value, json};

/// The interface swarm containers' traffic off the overlay network
/// enters the node's forwarding through.
pub const GATEWAY_BRIDGE: &str = "docker_gwbridge";
/// The chain's priority: before the filter table's forward chain (0),
/// Docker's own rules among it.
const PRIORITY: i32 = -1;

/// The nftables table of deployment `deployment`'s block (nft names allow
/// letters, digits and `_`).
pub fn table_name(deployment: &str) -> String {
    let name: String = deployment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("hubgate_{name}_metadata")
}

/// The ruleset that makes table `table` anew (its earlier rules gone, in
/// one transaction): what enters from `interface` to one of `addresses`
/// (IPv4 addresses or `a.b.c.d/n` networks) is refused (a TCP reset, an
/// ICMP unreachable otherwise), so a connection fails at once.
pub fn ruleset(table: &str, interface: &str, addresses: &[String]) -> Value {
    let t = json!({"family": "inet", "name": table});
    let set: Vec<Value> = addresses.iter().map(|a| address(a)).collect();
    let tcp = json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}});
    json!({"nftables": [
        {"add": {"table": t}},
        {"delete": {"table": t}},
        {"add": {"table": t}},
        {"add": {"chain": {
            "family": "inet", "table": table, "name": "forward",
            "type": "filter", "hook": "forward", "prio": PRIORITY, "policy": "accept",
        }}},
        rule(table, interface, &set, &[tcp, json!({"reject": {"type": "tcp reset"}})]),
        rule(table, interface, &set, &[json!({"reject": null})]),
    ]})
}

/// A rule of the forward chain: from `interface` to an address of `set`,
/// then `then`.
fn rule(table: &str, interface: &str, set: &[Value], then: &[Value]) -> Value {
    let mut expr = vec![
        json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": interface}}),
        json!({"match": {"op": "==",
            "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": {"set": set}}}),
    ];
    expr.extend(then.iter().cloned());
    json!({"add": {"rule": {"family": "inet", "table": table, "chain": "forward", "expr": expr}}})
}

/// An address or a network, as nft's JSON writes it.
fn address(a: &str) -> Value {
    match a.split_once('/') {
        Some((ip, bits)) => {
            json!({"prefix": {"addr": ip, "len": bits.parse::<u8>().unwrap_or(32)}})
        }
        None => json!(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_refuses_forwarded_traffic_to_the_addresses() {
        let addresses = ["169.254.169.254".to_owned(), "10.9.0.0/16".to_owned()];
        let r = ruleset(&table_name("my-hub"), GATEWAY_BRIDGE, &addresses);
        let items = r["nftables"].as_array().unwrap();
        assert_eq!(items[0]["add"]["table"]["name"], "hubgate_my_hub_metadata");
        assert_eq!(
            items[1]["delete"]["table"]["name"],
            "hubgate_my_hub_metadata"
        );
        assert_eq!(items[3]["add"]["chain"]["hook"], "forward");
        let expr = &items[4]["add"]["rule"]["expr"];
        assert_eq!(expr[0]["match"]["right"], "docker_gwbridge");
        assert_eq!(expr[1]["match"]["right"]["set"][0], "169.254.169.254");
        assert_eq!(expr[1]["match"]["right"]["set"][1]["prefix"]["len"], 16);
        assert_eq!(expr[3]["reject"]["type"], "tcp reset");
        assert!(items[5]["add"]["rule"]["expr"][2]["reject"].is_null());
    }
}
