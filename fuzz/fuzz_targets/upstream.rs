//! Any topic and payload reaching the hub: the edge checks (devices' and the gateway's) and
//! the ACL never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqchat_proto::{Access, DeviceIdentity, Principal, Registry, TopicRoot, authorize, upstream};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (topic, payload) = data.split_at(split);
    let Ok(topic) = std::str::from_utf8(topic) else { return };
    let root = TopicRoot::default();
    let registry = Registry::with_core();
    let _ = upstream::accept(&registry, &root, topic, payload, 4096);
    let _ = upstream::accept_gateway(&registry, &root, topic, payload, 4096);
    let me = Principal::Device(DeviceIdentity::parse_client_id("alice:phone").expect("valid"));
    let _ = authorize(&root, &me, Access::Subscribe, topic);
    let _ = authorize(&root, &me, Access::Publish { retain: true }, topic);
    let _ = root.parse_topic(topic);
});
